"""One training session and what it is made of: settings (TrainConfig), callbacks, self-training,
distribution."""
