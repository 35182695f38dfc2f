"""2D toy: distil an analytic Gaussian-mixture prior into points with the production objectives.

Reproduces the illustrative studies of the papers on a prior whose noisy scores are exact:
SSD (Tang et al., arXiv 2312.09305, section 5.2): mode-seeking gets trapped between two
conditional modes, mode-disengaging escapes but drifts into low density, SSD converges to a
conditional mode (when the singular mode sits at the trap and T_M reaches the timestep at which
the noisy conditional modes merge; see docs/toy2d.md); ESD (Wang et al., arXiv 2401.00909, Fig. 3): SDS collapses every particle to
one place, ESD keeps them spread.

The "latent" of each particle is the 2D point itself, reshaped to [N, 2, 1, 1] and handed to the
same objective functions, timestep schedules and reparameterised loss the 3D trainer uses.

    python scripts/toy2d.py --objective ssd --mixture assets/toy/ssd_two_modes.json --init 0,0
    python scripts/toy2d.py --objective esd --mixture assets/toy/esd_three_modes.json --particles 32 --plot docs/toy2d_esd.png
    python scripts/toy2d.py --objective ssd --mixture assets/toy/ssd_two_modes_centred.json --sweep threshold_timestep=0,200,400,600

The last line printed is a JSON object: `final` (the final [x, y] of every particle), distances to
the nearest conditional mode, log-densities and spread statistics. See docs/toy2d.md.

Prior. p(x) = sum_k w_k N(mu_k, std_k^2 I); p(x|y) = the components listed in `conditional`,
weights renormalised. Under the VP forward process x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps,
p_t(x_t) = sum_k w_k N(sqrt(abar_t) mu_k, (abar_t std_k^2 + 1 - abar_t) I), and the ideal noise
prediction is eps(x_t, t) = -sqrt(1 - abar_t) grad log p_t(x_t). alphas_cumprod is Stable
Diffusion's: 1000 steps, scaled-linear betas 0.00085 .. 0.012.

VSD / ESD. The LoRA is replaced by its ideal: the exact noisy score of the distribution of the
current particles. Every particle is one view of one object, so its camera is its own index:
q(x | c_i) is a Gaussian kernel at particle i, q(x | no camera) is the kernel density estimate
over all particles (bandwidth `--kde-bandwidth`). With one render per camera, VSD's camera score
nearly cancels the noise and VSD behaves like SDS at s = 7.5, which is ESD's point.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from splatgen.objectives import CSD, DSDS, OBJECTIVES, SDS, Objective, ScoreInputs, reparameterised_loss
from splatgen.objectives.schedules import TimestepSchedule, sample_timesteps

NUM_TRAIN_TIMESTEPS = 1000


def toy_objectives() -> dict[str, Objective]:
    """CLI name -> objective. 'mode-seeking' and 'mode-disengaging' are SDS and CSD at s = 1.

    The SDS family runs on the uniform range 0.02..0.98, as the papers' 2D studies do (the 3D
    default drops t_max part-way, GaussianDreamer's schedule); VSD/ESD keep their default annealing.
    """
    uniform = TimestepSchedule()
    return {
        **{name: cls() for name, cls in OBJECTIVES.items()},  # every objective at its defaults, except:
        "sds": SDS(timesteps=uniform),
        "dsds": DSDS(timesteps=uniform),
        "mode-seeking": SDS(guidance_scale=1.0, timesteps=uniform),  # w(t)(eps_y - eps)
        "mode-disengaging": CSD(guidance_scale=1.0),  # w(t)(eps_y - eps_0)
    }


@dataclass
class GaussianMixture:
    """Isotropic 2D Gaussian mixture."""

    means: torch.Tensor  # [K, 2]
    stds: torch.Tensor  # [K]
    weights: torch.Tensor  # [K], sums to 1


@dataclass
class ToyPrior:
    """The unconditional mixture p(x) and the conditional p(x|y) (a renormalised subset of it)."""

    unconditional: GaussianMixture
    conditional: GaussianMixture
    conditional_indices: list[int]


def load_prior(path: str | Path) -> ToyPrior:
    """Read {"means": [[x, y], ...], "std": [...], "weights": [...], "conditional": [k, ...]}."""
    spec = json.loads(Path(path).read_text())
    means = torch.tensor(spec["means"], dtype=torch.float64)
    stds = torch.tensor(spec["std"], dtype=torch.float64)
    weights = torch.tensor(spec["weights"], dtype=torch.float64)
    indices = [int(k) for k in spec["conditional"]]
    if means.ndim != 2 or means.shape[1] != 2 or stds.shape != (len(means),) or weights.shape != (len(means),):
        raise ValueError(f"{path}: means must be [K, 2] and std, weights [K]")
    if not indices or any(not 0 <= k < len(means) for k in indices):
        raise ValueError(f"{path}: conditional must list component indices in [0, {len(means)})")
    weights = weights / weights.sum()
    conditional = GaussianMixture(means[indices], stds[indices], weights[indices] / weights[indices].sum())
    return ToyPrior(GaussianMixture(means, stds, weights), conditional, indices)


def stable_diffusion_alphas_cumprod(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """abar_t for SD's scaled-linear schedule: betas = linspace(sqrt(0.00085), sqrt(0.012), T)^2: [T]."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def merge_timestep(mixture: GaussianMixture, alphas_cumprod: torch.Tensor) -> int:
    """First t at which two equal isotropic modes of the VP-diffused mixture merge into one.

    N(+m, s^2) and N(-m, s^2) mixed equally are bimodal iff m > s (1D, along the line joining them);
    after diffusion m_t = sqrt(abar_t) d and s_t^2 = abar_t std^2 + 1 - abar_t, with d the half-distance.
    """
    if len(mixture.means) != 2 or not torch.allclose(mixture.stds[0], mixture.stds[1]):
        raise ValueError("merge_timestep needs exactly two modes of equal std")
    half_distance = float((mixture.means[0] - mixture.means[1]).norm()) / 2.0
    std = float(mixture.stds[0])
    merged = half_distance**2 * alphas_cumprod <= alphas_cumprod * std**2 + 1.0 - alphas_cumprod  # [T]
    return int(torch.nonzero(merged)[0]) if bool(merged.any()) else len(alphas_cumprod)


def mixture_noise_prediction(
    mixture: GaussianMixture,
    noisy_points: torch.Tensor,  # [N, 2] x_t
    alphas_cumprod_t: torch.Tensor,  # [N] abar_t
) -> torch.Tensor:
    """Ideal eps(x_t, t) = -sqrt(1 - abar_t) grad log p_t(x_t) for the VP-diffused mixture: [N, 2]."""
    abar = alphas_cumprod_t[:, None]  # [N, 1]
    centres = abar.sqrt()[:, :, None] * mixture.means[None]  # [N, K, 2]
    variances = abar * mixture.stds[None] ** 2 + (1.0 - abar)  # [N, K]
    offsets = noisy_points[:, None, :] - centres  # [N, K, 2]
    log_components = (
        mixture.weights.log()[None] - 0.5 * (offsets**2).sum(-1) / variances - torch.log(2 * math.pi * variances)
    )  # [N, K]
    responsibilities = torch.softmax(log_components, dim=1)  # [N, K]
    # -grad log p_t = sum_k r_k (x_t - centre_k) / var_k
    minus_score = (responsibilities[:, :, None] * offsets / variances[:, :, None]).sum(1)  # [N, 2]
    return (1.0 - abar).sqrt() * minus_score


def mixture_log_density(mixture: GaussianMixture, points: torch.Tensor) -> torch.Tensor:
    """log p(x) of the clean mixture at points [N, 2]: [N]."""
    offsets = points[:, None, :] - mixture.means[None]  # [N, K, 2]
    variances = mixture.stds[None] ** 2  # [1, K]
    log_components = (
        mixture.weights.log()[None] - 0.5 * (offsets**2).sum(-1) / variances - torch.log(2 * math.pi * variances)
    )
    return torch.logsumexp(log_components, dim=1)


def particle_kernel_noise_prediction(
    particles: torch.Tensor,  # [N, 2] the clean particles, one per camera
    noisy_points: torch.Tensor,  # [N, 2] x_t of each particle
    alphas_cumprod_t: torch.Tensor,  # [N]
    bandwidth: float,
) -> torch.Tensor:
    """eps of q(x | c_i) = N(particle_i, bandwidth^2 I), each particle's own camera: [N, 2]."""
    abar = alphas_cumprod_t[:, None]  # [N, 1]
    variance = abar * bandwidth**2 + (1.0 - abar)
    return (1.0 - abar).sqrt() * (noisy_points - abar.sqrt() * particles) / variance


def kernel_density(particles: torch.Tensor, bandwidth: float) -> GaussianMixture:
    """q(x | no camera): equal-weight Gaussian kernels of the given bandwidth at the particles."""
    count = particles.shape[0]
    return GaussianMixture(
        particles,
        torch.full((count,), bandwidth, dtype=particles.dtype),
        torch.full((count,), 1.0 / count, dtype=particles.dtype),
    )


def as_latent(points: torch.Tensor) -> torch.Tensor:
    """[N, 2] points -> [N, 2, 1, 1]: each point is a 2-channel, 1x1 latent."""
    return points.reshape(points.shape[0], 2, 1, 1)


def run_toy(
    objective: Objective,
    prior: ToyPrior,
    init: tuple[float, float] = (0.0, 0.0),
    steps: int = 2000,
    seed: int = 0,
    particles: int = 16,
    init_spread: float = 0.0,
    lr: float = 0.01,
    kde_bandwidth: float = 0.1,
    record_every: int = 10,
) -> dict:
    """Optimise `particles` points with Adam under `objective`; returns the trajectory and metrics."""
    objective.validate()
    generator = torch.Generator().manual_seed(seed)
    alphas_cumprod = stable_diffusion_alphas_cumprod()
    start = torch.tensor(init, dtype=torch.float64) + init_spread * torch.randn(
        particles, 2, generator=generator, dtype=torch.float64
    )
    points = torch.nn.Parameter(start)  # [N, 2]
    optimizer = torch.optim.Adam([points], lr=lr)
    trajectory = [points.detach().clone()]
    for step in range(steps):
        progress = step / steps
        timesteps = sample_timesteps(objective.timesteps, progress, particles, NUM_TRAIN_TIMESTEPS, generator)  # [N]
        noise = torch.randn(particles, 2, generator=generator, dtype=torch.float64)  # [N, 2]
        clean = points.detach()
        abar = alphas_cumprod[timesteps]  # [N]
        noisy = abar.sqrt()[:, None] * clean + (1.0 - abar).sqrt()[:, None] * noise  # [N, 2]
        eps_lora_camera = eps_lora_no_camera = None
        if objective.uses_lora:  # the ideal LoRA: exact scores of the particles' own distribution
            eps_lora_camera = as_latent(particle_kernel_noise_prediction(clean, noisy, abar, kde_bandwidth))
            eps_lora_no_camera = as_latent(mixture_noise_prediction(kernel_density(clean, kde_bandwidth), noisy, abar))
        inputs = ScoreInputs(
            latents=as_latent(clean),
            noise=as_latent(noise),
            timesteps=timesteps,
            alphas_cumprod=alphas_cumprod,
            eps_cond=as_latent(mixture_noise_prediction(prior.conditional, noisy, abar)),
            eps_uncond=as_latent(mixture_noise_prediction(prior.unconditional, noisy, abar)),
            progress=progress,
            eps_lora_camera=eps_lora_camera,
            eps_lora_no_camera=eps_lora_no_camera,
        )
        gradient = objective.gradient(inputs)  # [N, 2, 1, 1]
        optimizer.zero_grad()
        reparameterised_loss(as_latent(points), gradient).backward()
        optimizer.step()
        if (step + 1) % record_every == 0 or step + 1 == steps:
            trajectory.append(points.detach().clone())
    return {"trajectory": torch.stack(trajectory), **final_metrics(prior, points.detach())}


def final_metrics(prior: ToyPrior, points: torch.Tensor) -> dict:
    """Distances to the nearest conditional mode, log-densities and spread of the final points [N, 2]."""
    distances = torch.cdist(points, prior.conditional.means)  # [N, K_cond]
    nearest_distance, nearest_mode = distances.min(dim=1)
    within = nearest_distance <= 3.0 * prior.conditional.stds[nearest_mode]  # [N] at a mode
    counts = torch.bincount(nearest_mode[within], minlength=len(prior.conditional_indices)).double()
    shares = counts[counts > 0] / counts.sum().clamp_min(1.0)
    return {
        "final": points.tolist(),
        "distance_to_conditional_mode": nearest_distance.tolist(),
        "mean_distance_to_conditional_mode": nearest_distance.mean().item(),
        "median_distance_to_conditional_mode": nearest_distance.median().item(),
        "fraction_at_a_conditional_mode": within.double().mean().item(),
        "mean_conditional_log_density": mixture_log_density(prior.conditional, points).mean().item(),
        "spread": (points - points.mean(0)).norm(dim=1).mean().item(),
        "conditional_modes_covered": int(torch.unique(nearest_mode[within]).numel()),
        "mode_assignment_entropy": float(-(shares * shares.log()).sum()) + 0.0,
    }


def plot_runs(prior: ToyPrior, runs: dict[str, dict], path: str | Path, noisy_timestep: int | None = None) -> None:
    """One panel per run over log p(x|y): trajectories, final points; optionally p_t(x|y) at noisy_timestep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finals = torch.cat([torch.tensor(run["final"]) for run in runs.values()] + [prior.unconditional.means])
    low = torch.minimum(finals.min(0).values, prior.unconditional.means.min(0).values) - 1.0
    high = torch.maximum(finals.max(0).values, prior.unconditional.means.max(0).values) + 1.0
    half_height = max(float(high[1] - low[1]), 0.6 * float(high[0] - low[0])) / 2.0  # no sliver panels
    centre_y = float(high[1] + low[1]) / 2.0
    low[1], high[1] = centre_y - half_height, centre_y + half_height
    xs, ys = (
        torch.linspace(low[0], high[0], 200, dtype=torch.float64),
        torch.linspace(low[1], high[1], 200, dtype=torch.float64),
    )
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)  # [G, 2]
    panels = len(runs) + (noisy_timestep is not None)
    figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.2), squeeze=False)
    density = mixture_log_density(prior.conditional, grid).reshape(200, 200).clamp_min(-12.0)
    for axis, (name, run) in zip(axes[0], runs.items()):
        axis.contourf(xs, ys, density, levels=30, cmap="Blues")
        trajectory = run["trajectory"]  # [R, N, 2]
        for particle in range(min(trajectory.shape[1], 16)):
            axis.plot(trajectory[:, particle, 0], trajectory[:, particle, 1], lw=0.8, color="tab:orange", alpha=0.7)
        final = trajectory[-1]
        axis.scatter(final[:, 0], final[:, 1], s=12, color="tab:red", zorder=3, label="final")
        axis.set_title(
            f"{name}: mean dist {run['mean_distance_to_conditional_mode']:.2f}, spread {run['spread']:.2f}", fontsize=9
        )
    if noisy_timestep is not None:
        axis = axes[0][-1]
        abar = stable_diffusion_alphas_cumprod()[noisy_timestep]
        sqrt_abar = math.sqrt(abar)
        noisy_mixture = GaussianMixture(
            prior.conditional.means * sqrt_abar,
            (abar * prior.conditional.stds**2 + 1 - abar).sqrt(),
            prior.conditional.weights,
        )
        axis.contourf(xs, ys, mixture_log_density(noisy_mixture, grid).reshape(200, 200), levels=30, cmap="Greens")
        axis.set_title(f"log p_t(x_t | y) at t = {noisy_timestep}", fontsize=9)
    for axis in axes[0]:
        unconditional_only = [k for k in range(len(prior.unconditional.means)) if k not in prior.conditional_indices]
        axis.scatter(*prior.conditional.means.T, marker="*", s=120, color="black", zorder=4, label="conditional mode")
        if unconditional_only:
            axis.scatter(
                *prior.unconditional.means[unconditional_only].T,
                marker="X",
                s=80,
                color="purple",
                zorder=4,
                label="singular mode",
            )
        axis.set_aspect("equal")
        axis.set_xlim(low[0], high[0])
        axis.set_ylim(low[1], high[1])
    axes[0][0].legend(loc="lower left", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_point(text: str) -> tuple[float, float]:
    x, y = (float(value) for value in text.split(","))
    return x, y


def with_overrides(objective: Objective, overrides: list[str]) -> Objective:
    """Apply FIELD=VALUE overrides (FIELD may be dotted, e.g. timesteps.max_fraction) to an objective."""
    for override in overrides:
        path, _, text = override.partition("=")
        *parents, name = path.split(".")
        owners = [objective]
        for parent in parents:
            owners.append(getattr(owners[-1], parent))
        current = getattr(owners[-1], name)
        value = type(current)(text) if not isinstance(current, bool) else text.lower() in ("1", "true", "yes")
        for owner, field_name in zip(reversed(owners), reversed([*parents, name])):
            value = dataclasses.replace(owner, **{field_name: value})
        objective = value
    objective.validate()
    return objective


def sweep(objective: Objective, prior: ToyPrior, args: argparse.Namespace) -> dict:
    """One run per value of `args.sweep`'s field (and per seed); prints a table and a JSON line of means."""
    field_name, _, values_text = args.sweep.partition("=")
    seeds = [int(seed) for seed in (args.seeds or str(args.seed)).split(",")]
    rows = {}
    for value in values_text.split(","):
        configured = with_overrides(objective, [*args.override, f"{field_name}={value}"])
        runs = [
            run_toy(
                configured,
                prior,
                args.init,
                args.steps,
                seed,
                args.particles,
                args.init_spread,
                args.lr,
                args.kde_bandwidth,
            )
            for seed in seeds
        ]
        keys = ("mean_distance_to_conditional_mode", "fraction_at_a_conditional_mode", "mean_conditional_log_density")
        rows[value] = {key: sum(run[key] for run in runs) / len(runs) for key in keys}
        print(
            f"{field_name}={value:>6}: distance to a conditional mode {rows[value][keys[0]]:.3f}, "
            f"at a mode {rows[value][keys[1]]:.2f}, log p(x|y) {rows[value][keys[2]]:.1f}  (seeds {seeds})"
        )
    report = {"objective": args.objective, "sweep": field_name, "seeds": seeds, "rows": rows}
    print(json.dumps(report))
    return report


def main(argv: list[str] | None = None) -> dict:
    torch.set_num_threads(1)  # tiny tensors: threads only add contention
    names = toy_objectives()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objective", required=True, choices=sorted(names), help="objective to distil with")
    parser.add_argument("--mixture", required=True, help="mixture JSON: means, std, weights, conditional")
    parser.add_argument(
        "--init", type=parse_point, default=(0.0, 0.0), help="initial point x,y (default 0,0; negative: --init=-1,0)"
    )
    parser.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of t, the noise and the initial jitter")
    parser.add_argument("--particles", type=int, default=16, help="number of points optimised together (default 16)")
    parser.add_argument("--init-spread", type=float, default=0.0, help="std of the Gaussian jitter around --init")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    parser.add_argument(
        "--kde-bandwidth", type=float, default=0.1, help="VSD/ESD: kernel width of the ideal LoRA score"
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change an objective field, e.g. threshold_timestep=500 (repeatable)",
    )
    parser.add_argument(
        "--compare", default="", help="comma-separated objectives run with the same settings, plotted alongside"
    )
    parser.add_argument(
        "--sweep",
        default=None,
        metavar="FIELD=V1,V2,...",
        help="run --objective once per value of one field (e.g. threshold_timestep=0,200,400) and print a table",
    )
    parser.add_argument("--seeds", default=None, help="with --sweep: comma-separated seeds averaged per value")
    parser.add_argument("--plot", default=None, help="write a PNG of trajectories over log p(x|y)")
    parser.add_argument("--plot-timestep", type=int, default=None, help="add a panel of p_t(x_t|y) at this t")
    args = parser.parse_args(argv)
    prior = load_prior(args.mixture)
    if args.sweep is not None:
        return sweep(names[args.objective], prior, args)
    run_names = [args.objective] + [name for name in args.compare.split(",") if name and name != args.objective]
    runs = {}
    for name in run_names:
        if name not in names:
            parser.error(f"unknown objective {name!r} in --compare; choose from {sorted(names)}")
        objective = with_overrides(names[name], args.override) if name == args.objective else names[name]
        runs[name] = run_toy(
            objective,
            prior,
            args.init,
            args.steps,
            args.seed,
            args.particles,
            args.init_spread,
            args.lr,
            args.kde_bandwidth,
        )
    if args.plot:
        plot_runs(prior, runs, args.plot, args.plot_timestep)
    summary_keys = [
        key for key in runs[args.objective] if key not in ("trajectory", "final", "distance_to_conditional_mode")
    ]
    for name, run in runs.items():
        print(
            f"{name:>16}: mean distance to a conditional mode {run['mean_distance_to_conditional_mode']:.3f}, "
            f"at a mode {run['fraction_at_a_conditional_mode']:.2f}, spread {run['spread']:.3f}, "
            f"modes covered {run['conditional_modes_covered']}"
        )
    report = {
        "objective": args.objective,
        "overrides": args.override,
        **{key: value for key, value in runs[args.objective].items() if key != "trajectory"},
        "compare": {name: {key: runs[name][key] for key in summary_keys} for name in run_names[1:]},
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
