"""Write, in a process without TensorFlow (torchvision aborts when imported after it), the three
checkpoint layouts from randomly initialized torchvision DenseNet121 models and PyTorch's outputs
on fixed raw-pixel inputs: ``python tests/interop/torch_reference.py OUT_DIR SIZE``. Used by
tests/interop/test_weights.py."""

import re
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def densenet(outputs, channels=3, sigmoid_head=True, seed=0):
    torch.manual_seed(seed)
    net = torchvision.models.densenet121(weights=None)
    if channels == 1:
        net.features.conv0 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    head = torch.nn.Linear(1024, outputs)
    net.classifier = torch.nn.Sequential(head, torch.nn.Sigmoid()) if sigmoid_head else head
    with torch.no_grad():                   # non-trivial batch-norm statistics, as a trained model has
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def outputs(net, x, normalization):
    if normalization == "imagenet":
        t = ((np.repeat(x / 255.0, 3, axis=-1) - MEAN) / STD).transpose(0, 3, 1, 2)
    else:                                   # torchxrayvision: [-1024, 1024], one channel, sigmoid
        t = ((2 * (x / 255.0) - 1) * 1024).transpose(0, 3, 1, 2)
    with torch.no_grad():
        out = net(torch.tensor(t, dtype=torch.float32))
    return (out if normalization == "imagenet" else torch.sigmoid(out)).numpy()


def old_names(state):
    """arnoweng's DataParallel checkpoint: ``module.densenet121.`` and the pre-0.4 ``norm.1`` names."""
    return {"module.densenet121." + re.sub(r"\.(norm|relu|conv)(\d)\.", r".\1.\2.", k): v for k, v in state.items()}


def main(out, size):
    out = Path(out)
    x = np.random.default_rng(1).integers(0, 256, (3, size, size, 1)).astype(np.float32)
    arno = densenet(14, seed=0)
    torch.save({"epoch": 1, "state_dict": old_names(arno.state_dict()), "best_loss": 0.1}, out / "model.pth.tar")
    jrzech = densenet(14, seed=2)
    torch.save({"model": jrzech, "best_loss": 0.2, "epoch": 3, "LR": 1e-4}, out / "checkpoint")
    xrv = densenet(18, channels=1, sigmoid_head=False, seed=3)
    op = torch.linspace(0.1, 0.6, 18)
    torch.save({**xrv.state_dict(), "op_threshs": op}, out / "densenet121-res224-all.pt")
    np.savez(out / "reference.npz", x=x, arnoweng=outputs(arno, x, "imagenet"), jrzech=outputs(jrzech, x, "imagenet"),
             torchxrayvision=outputs(xrv, x, "xrv"), op_threshs=op.numpy())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
