"""Fit and transform throughput of TripletEmbedder on the CPU and, where there is one, on a GPU.

A synthetic problem large enough to matter: ``n_samples`` points in 128 dimensions from
``n_classes`` classes (Gaussian clusters seen through a fixed random non-linear map). Each
configuration is fitted for ``--epochs`` epochs after one warm-up epoch (CUDA context, kernel
selection), then embeds the whole set. Prints one Markdown table.

    python benchmarks/gpu.py                       # 200,000 x 128, 1,000 classes; CPU and CUDA if
    present python benchmarks/gpu.py --n-samples 20000     # a smaller run that suits a laptop CPU
"""

import argparse
import platform
import time

import numpy as np
import torch

from sklearn_triplet import TripletEmbedder


def make_problem(n_samples, n_features, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    latent_dim = 32
    centers = rng.normal(size=(n_classes, latent_dim)) * 2.0
    y = rng.integers(n_classes, size=n_samples)
    z = centers[y] + rng.normal(size=(n_samples, latent_dim))
    W1 = rng.normal(size=(latent_dim, n_features)) / np.sqrt(latent_dim)
    X = np.tanh(z @ W1) + 0.1 * rng.normal(size=(n_samples, n_features))
    return X.astype(np.float32), y


def run(X, y, *, device, batch_size, epochs, mixed_precision, mining, n_threads=None):
    params = dict(
        device=device,
        n_threads=n_threads,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        mining=mining,
        random_state=0,
        hidden_layer_sizes=(512, 512),
        n_components=64,
    )
    # Warm-up: one epoch on a slice (CUDA context, cuBLAS handles, allocator).
    TripletEmbedder(max_iter=1, **params).fit(X[: 8 * batch_size], y[: 8 * batch_size])
    est = TripletEmbedder(max_iter=epochs, **params)
    start = time.perf_counter()
    est.fit(X, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    est.transform(X)
    transform_s = time.perf_counter() - start
    return {
        "fit samples/s": X.shape[0] * epochs / fit_s,
        "transform samples/s": X.shape[0] / transform_s,
        "fit s": fit_s,
        "final loss": est.history_[-1]["loss"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=128)
    parser.add_argument("--n-classes", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-sizes", default="256,1024", help="comma-separated")
    parser.add_argument(
        "--devices", default=None, help="comma-separated; default cpu and cuda if present"
    )
    parser.add_argument("--cpu-threads", type=int, default=None, help="n_threads of the estimator")
    parser.add_argument("--mining", default="semi-hard")
    args = parser.parse_args(argv)
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)

    devices = (
        args.devices.split(",")
        if args.devices
        else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    X, y = make_problem(args.n_samples, args.n_features, args.n_classes)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(
        f"# {time.strftime('%Y-%m-%d')}  torch {torch.__version__}  "
        f"CPU: {platform.processor() or platform.machine()} "
        f"({torch.get_num_threads()} torch threads)  GPU: {gpu}"
    )
    print(
        f"# problem: {args.n_samples} x {args.n_features}, {args.n_classes} classes; "
        "MLP 512-512-64; "
        f"{args.epochs} epochs; mining={args.mining}"
    )
    print("| device | batch | bf16 | fit samples/s | transform samples/s | fit s | final loss |")
    print("|---|---|---|---|---|---|---|")
    for device in devices:
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            for mixed in [False, True] if device.startswith("cuda") else [False]:
                r = run(
                    X,
                    y,
                    device=device,
                    batch_size=batch_size,
                    epochs=args.epochs,
                    mixed_precision=mixed,
                    mining=args.mining,
                    n_threads=args.cpu_threads,
                )
                print(
                    f"| {device} | {batch_size} | {'yes' if mixed else 'no'} | "
                    f"{r['fit samples/s']:,.0f} | "
                    f"{r['transform samples/s']:,.0f} | {r['fit s']:.1f} | {r['final loss']:.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
