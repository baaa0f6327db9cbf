import torch

torch.set_num_threads(1)

try:
    import matplotlib
except ImportError:  # matplotlib is optional; the plotting tests skip without it
    pass
else:
    matplotlib.use("Agg")
