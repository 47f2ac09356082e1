"""The reference side of the EGNN kernel comparison (`benches/egnn-pytorch.sh` runs it).

An EGNN with the architecture of the adjoint_samplers reference (configs/model/egnn.yaml:
hidden 128, 5 layers, SiLU, recurrent, attention, tanh, sum aggregation; the DEM EGNN it
credits), written here from its description in ../shared/docs/science.md and the reference's
layer sizes, for timing only:

- node input h = t, embedded by Linear(1 -> H);
- per layer, on the directed edges i != j of each cluster:
  edge MLP  m_ij = SiLU(Linear(H)(SiLU(Linear(2H + 2 -> H)([h_i, h_j, r_ij^2, r0_ij^2])))),
  attention m_ij *= sigmoid(Linear(H -> 1)(m_ij)),
  coordinates x_i += sum_j (x_i - x_j) / (|x_i - x_j| + 1) * tanh(phi_x(m_ij)) * 15 / L,
            phi_x = Linear(H -> H), SiLU, Linear(H -> 1, no bias),
  node MLP  h_i += Linear(H)(SiLU(Linear(2H -> H)([h_i, sum_j m_ij]))),
  with gather by edge index and scatter-add, as the reference does;
- output x_L - x_0 with the centre of mass removed.

Usage: python egnn_torch.py [--threads 2] [--batch 256] [--reps 5]
Prints one line per size: "torch L x H batch B: forward F ms, forward+backward FB ms".
"""

import argparse
import time

import torch
from torch import nn


class Layer(nn.Module):
    def __init__(self, hidden, coords_range):
        super().__init__()
        self.edge = nn.Sequential(nn.Linear(2 * hidden + 2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.gate = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.coord = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), last, nn.Tanh())
        self.node = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.coords_range = coords_range

    def forward(self, h, x, src, dst, r0):
        diff = x[src] - x[dst]
        r2 = (diff * diff).sum(1, keepdim=True)
        unit = diff / (torch.sqrt(r2 + 1e-8) + 1.0)
        m = self.edge(torch.cat([h[src], h[dst], r2, r0], dim=1))
        m = m * self.gate(m)
        moves = unit * self.coord(m) * self.coords_range
        x = x.index_add(0, src, moves)
        summed = torch.zeros_like(h).index_add(0, src, m)
        h = h + self.node(torch.cat([h, summed], dim=1))
        return h, x


class Egnn(nn.Module):
    def __init__(self, particles, dim, layers, hidden):
        super().__init__()
        self.particles, self.dim = particles, dim
        self.embed = nn.Linear(1, hidden)
        self.layers = nn.ModuleList(Layer(hidden, 15.0 / layers) for _ in range(layers))
        pairs = [(i, j) for i in range(particles) for j in range(particles) if i != j]
        self.pairs = torch.tensor(pairs, dtype=torch.long).T
        self.cache = {}

    def edges(self, batch):
        if batch not in self.cache:
            offsets = (torch.arange(batch) * self.particles).repeat_interleave(self.pairs.shape[1])
            self.cache = {batch: (self.pairs[0].repeat(batch) + offsets, self.pairs[1].repeat(batch) + offsets)}
        return self.cache[batch]

    def forward(self, t, xs):
        b = xs.shape[0]
        src, dst = self.edges(b)
        x0 = xs.reshape(b * self.particles, self.dim)
        h = self.embed(t.repeat_interleave(self.particles).unsqueeze(1))
        d0 = x0[src] - x0[dst]
        r0 = (d0 * d0).sum(1, keepdim=True)
        x = x0
        for layer in self.layers:
            h, x = layer(h, x, src, dst, r0)
        v = (x - x0).reshape(b, self.particles, self.dim)
        return (v - v.mean(1, keepdim=True)).reshape(b, self.particles * self.dim)


def timed(reps, f):
    f()  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - start) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--particles", type=int, default=13)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for layers, hidden in [(3, 64), (5, 128)]:
        net = Egnn(args.particles, 3, layers, hidden)
        x = torch.randn(args.batch, args.particles * 3)
        t = torch.rand(args.batch)

        def forward():
            with torch.no_grad():
                net(t, x)

        def forward_backward():
            net.zero_grad(set_to_none=True)
            net(t, x).pow(2).mean().backward()

        f = timed(args.reps, forward)
        fb = timed(args.reps, forward_backward)
        print(f"torch {layers}x{hidden} batch {args.batch}: forward {f * 1e3:.1f} ms, forward+backward {fb * 1e3:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
