"""``cxr-tf data-service``: run a tf.data service (a dispatcher and workers) that decodes the
training images for ``cxr-tf train --data-service ADDRESS`` (:mod:`cxr_tf.pipeline`)."""

from __future__ import annotations

import socket

import click


def _serve(servers, what: str) -> None:
    """Block until interrupted (Ctrl-C or SIGTERM), then stop ``servers``."""
    try:
        servers[0].join()
    except KeyboardInterrupt:
        click.echo(f"stopping the {what}")
    finally:
        for server in reversed(servers):
            server.stop()


@click.group("data-service")
def data_service():
    """Run a tf.data service: a dispatcher and workers that read and decode the training images,
    so that one trainer's input pipeline spreads over many CPU machines. Each worker reads the
    shards at the paths the trainer gives, so the records must be at the same path (or bucket URL)
    on every worker.

    Example: cxr-tf data-service local --workers 2"""


@data_service.command()
@click.option("--port", default=5050, show_default=True, help="TCP port to listen on (0: any free port).")
@click.option("--work-dir", default=None, type=click.Path(file_okay=False),
              help="Folder where the dispatcher journals its state, so that a restarted dispatcher resumes "
                   "(fault-tolerant mode) [default: none, state in memory].")
def dispatcher(port, work_dir):
    """Run the dispatcher, which hands out the shard files of each epoch to the workers, until
    interrupted.

    Example: cxr-tf data-service dispatcher --port 5050"""
    from cxr_tf.pipeline import start_dispatcher

    server = start_dispatcher(port, work_dir)
    address = f"{socket.gethostname()}:{server.target.rsplit(':', 1)[-1]}"
    click.echo(f"dispatcher at {server.target}; start workers with `cxr-tf data-service worker --dispatcher "
               f"{address}` and train with `cxr-tf train --data-service {address}`")
    _serve([server], "dispatcher")


@data_service.command()
@click.option("--dispatcher", "dispatcher_address", required=True, metavar="HOST:PORT",
              help="The dispatcher's address.")
@click.option("--port", default=5051, show_default=True, help="TCP port to listen on (0: any free port).")
@click.option("--worker-address", default=None, metavar="HOST:PORT",
              help="How trainers reach this worker [default: localhost:PORT; give this host's name when trainers "
                   "run on other machines].")
def worker(dispatcher_address, port, worker_address):
    """Run one worker, which reads and decodes the shards the dispatcher assigns it, until
    interrupted.

    Example: cxr-tf data-service worker --dispatcher head-node:5050 --port 5051"""
    from cxr_tf.pipeline import start_worker

    server = start_worker(dispatcher_address, port, worker_address)
    click.echo(f"worker on port {port or 'any'} serving dispatcher {dispatcher_address}")
    _serve([server], "worker")


@data_service.command()
@click.option("--workers", "n_workers", default=2, show_default=True, type=click.IntRange(min=1),
              help="Workers to start beside the dispatcher.")
@click.option("--port", default=0, show_default=True, help="The dispatcher's TCP port (0: any free port).")
def local(n_workers, port):
    """Run a dispatcher and N workers in this one process (to try the service, or to test a
    setup), print the address to give `cxr-tf train --data-service`, and serve until interrupted.

    Example: cxr-tf data-service local --workers 2"""
    from cxr_tf.pipeline import start_dispatcher, start_worker

    server = start_dispatcher(port)
    address = server.target.split("://")[-1]
    workers = [start_worker(address) for _ in range(n_workers)]
    click.echo(f"data service at {address} with {n_workers} worker(s); train with "
               f"`cxr-tf train --data-service {address}`")
    _serve([server, *workers], "data service")


def register(group: click.Group) -> None:
    """Add the ``data-service`` commands to the ``cxr-tf`` group."""
    group.add_command(data_service)
