#!/usr/bin/env python3
"""Training throughput of the same MLPs in Dagger and in PyTorch (CPU).

Runs `cargo bench --bench mlp -- --csv` for Dagger's figures, then trains
each model in PyTorch with the same layers, batch, optimizer (Adam, lr 1e-3),
loss (cross-entropy) and thread count, and prints both with the ratio.
Installs PyTorch's CPU build with pip when it is missing.

With --gpu, both run on GPU 0 instead (Dagger's GpuProgram; PyTorch on
CUDA, timed with torch.cuda.synchronize). --bin PATH runs an already built
bench binary instead of cargo (the GPU machine has no Rust toolchain).

    python3 benches/mlp_vs_torch.py [--gpu] [--bin PATH]
"""
import os
import subprocess
import sys
import time


def say(what):
    """Says on stderr what the script does next (the table goes to stdout)."""
    print(f"mlp_vs_torch: {what}", file=sys.stderr, flush=True)


def ensure_torch():
    try:
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    say("torch missing: installing the CPU build with pip")
    cpu = [sys.executable, "-m", "pip", "install", "--quiet", "torch",
           "--index-url", "https://download.pytorch.org/whl/cpu"]
    if subprocess.call(cpu) != 0:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "torch"])


def dagger_rates(root, gpu, binary):
    flags = ["--csv"] + (["--gpu"] if gpu else [])
    command = [binary] + flags if binary else ["cargo", "bench", "--bench", "mlp", "--"] + flags
    say(f"Dagger's figures: {' '.join(command)}" + ("" if binary else " (cargo builds it first)"))
    bench = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    out = []
    rows = []
    for line in bench.stdout:
        out.append(line)
        parts = line.strip().split(",")
        if len(parts) == 4:
            rows.append((parts[0], int(parts[1]), parts[2], float(parts[3])))
            say(f"Dagger: {parts[0]}, batch {parts[1]}: {float(parts[3]):.0f} samples/s")
    if bench.wait() != 0:
        raise subprocess.CalledProcessError(bench.returncode, command)
    if gpu and "no GPU figures" in "".join(out):
        sys.exit("".join(out).strip())
    return rows


def torch_rate(name, batch, threads):
    import torch
    gpu = threads == "gpu"
    device = torch.device("cuda" if gpu else "cpu")
    if not gpu:
        torch.set_num_threads(int(threads))
    torch.manual_seed(1)
    widths = [int(w) for w in name.split()[-1].split("-")]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch, widths[0], device=device)
    y = torch.randint(0, widths[-1], (batch,), device=device)
    steps = 2000 if widths[0] < 100 else 40
    if gpu:
        steps = max(steps, 500)  # as the GPU bench does

    def sync():
        if gpu:
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(steps // 10 + 2):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch / (time.perf_counter() - start)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    gpu = "--gpu" in sys.argv
    binary = sys.argv[sys.argv.index("--bin") + 1] if "--bin" in sys.argv else None
    ensure_torch()
    import torch
    rows = dagger_rates(root, gpu, os.path.abspath(binary) if binary else None)
    where = f"GPU: {torch.cuda.get_device_name(0)}" if gpu else "CPU"
    print(f"PyTorch {torch.__version__} ({where}), Adam lr 1e-3, cross-entropy, best effort same threads\n")
    print("| model | batch | threads | dagger samples/s | PyTorch samples/s | dagger / PyTorch |")
    print("|---|---|---|---|---|---|", flush=True)
    say(f"Dagger: {len(rows)} rows; now the same models in PyTorch, a row each")
    for i, (name, batch, threads, ours) in enumerate(rows, 1):
        say(f"PyTorch {i}/{len(rows)}: {name}, batch {batch}, threads {threads}")
        theirs = torch_rate(name, batch, threads)
        print(f"| {name} | {batch} | {threads} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
