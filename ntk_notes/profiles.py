"""Run profiles: one name picks consistent sizes for a notebook.

- ``smoke``: CI on 2 CPU cores; checks the plumbing, not the science.
- ``default``: a laptop CPU, a few minutes per notebook, findings already visible.
- ``paper``: a GPU, the paper's datasets and scales.

Each notebook's papermill parameters cell holds ``profile`` and its sizes set to ``None``;
``settings(notebook, profile, **overrides)`` fills every ``None`` from the profile.
"""

from __future__ import annotations

from types import SimpleNamespace

PROFILES = ("smoke", "default", "paper")

SIZES: dict[str, dict[str, dict]] = {
    "ntk_in_practice": {
        "smoke": dict(dataset="mnist-5k", classes=(3, 5), n_train=64, n_test=64, image_size=14,
                      depths=(1, 2), widths=(64, 256), seeds=(0,), train_steps=40,
                      probe_size=16),
        "default": dict(dataset="mnist-5k", classes=(3, 5), n_train=500, n_test=300, image_size=14,
                        depths=(1, 2, 3), widths=(64, 128, 256, 512, 1024, 2048, 4096, 8192),
                        seeds=(0, 1, 2), train_steps=500, probe_size=64),
        "paper": dict(dataset="mnist", classes=(3, 5), n_train=2000, n_test=1000, image_size=28,
                      depths=(1, 2, 3), widths=(64, 128, 256, 512, 1024, 2048, 4096, 8192),
                      seeds=(0, 1, 2, 3, 4), train_steps=2000, probe_size=256),
    },
    "adversarial_without_training": {
        "smoke": dict(dataset="mnist-5k", binary_classes=(3, 5), seed=0,
                      fc=dict(image_size=14, n_train=64, n_test=32), conv=dict(image_size=8, n_train=32, n_test=16),
                      epsilons=(0.0, 0.1, 0.2), check_epsilon=0.1, pgd_steps=5, seeds=(0, 1), authors_setting=None),
        "default": dict(dataset="mnist-5k", binary_classes=(3, 5), seed=0,
                        fc=dict(image_size=28, n_train=800, n_test=200), conv=dict(image_size=14, n_train=400, n_test=100),
                        epsilons=(0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3), check_epsilon=0.1, pgd_steps=10,
                        seeds=(0, 1, 2), authors_setting=None),
        "paper": dict(dataset="mnist", binary_classes=(3, 5), seed=0,
                      fc=dict(image_size=28, n_train=5000, n_test=1000), conv=dict(image_size=28, n_train=2000, n_test=500),
                      epsilons=(0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3), check_epsilon=0.1, pgd_steps=10,
                      seeds=(0, 1, 2), authors_setting=dict(dataset="cifar10", classes=(0, 1), n_train=2000, n_test=100)),
    },
    "transfer_lazy": {
        # Laziness varied alone by the output scale alpha (Chizat et al. 2019) at one width;
        # "deep" repeats the sweep with more hidden layers.
        "smoke": dict(dataset="mnist-5k", classes=(3, 5), n_train=64, n_test=32, image_size=8, seed=0,
                      width=64, depth=1, alphas=(10.0, 1.0, 0.1, 0.03), seeds=(0, 1, 2), target_loss=0.05,
                      max_steps=1000, epsilon=0.1, pgd_steps=2, smooth_sigma=0.1, smooth_samples=2,
                      probe_size=16, surrogate_seed=1000, matched_epsilons=(0.1, 0.3),
                      matched_accuracy=0.2, deep=dict(depth=2, alphas=(10.0, 0.03), seeds=(0, 1, 2)),
                      width_sweep=dict(widths=(32, 64, 128, 256), alpha=1.0)),
        "default": dict(dataset="mnist-5k", classes=(3, 5), n_train=400, n_test=200, image_size=14, seed=0,
                        width=512, depth=1, alphas=(10.0, 3.0, 1.0, 0.3, 0.1, 0.03), seeds=(0, 1, 2),
                        target_loss=0.02, max_steps=20000, epsilon=0.1, pgd_steps=10, smooth_sigma=0.1,
                        smooth_samples=16, probe_size=64, surrogate_seed=1000,
                        matched_epsilons=(0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3), matched_accuracy=0.1,
                        deep=dict(depth=2, alphas=(10.0, 1.0, 0.1, 0.03), seeds=(0, 1, 2)),
                        width_sweep=dict(widths=(128, 256, 512, 2048), alpha=1.0)),
        "paper": dict(dataset="mnist", classes=(3, 5), n_train=2000, n_test=1000, image_size=28, seed=0,
                      width=2048, depth=1, alphas=(30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01), seeds=(0, 1, 2, 3, 4),
                      target_loss=0.01, max_steps=100000, epsilon=0.1, pgd_steps=20, smooth_sigma=0.1,
                      smooth_samples=32, probe_size=256, surrogate_seed=1000,
                      matched_epsilons=(0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3), matched_accuracy=0.1,
                      deep=dict(depth=3, alphas=(10.0, 3.0, 1.0, 0.3, 0.1, 0.03), seeds=(0, 1, 2, 3, 4)),
                      width_sweep=dict(widths=(256, 512, 1024, 2048, 8192), alpha=1.0)),
    },
    "eigen_features": {
        "smoke": dict(dataset="mnist-5k", classes=(3, 5), n_train=64, n_test=32, image_size=14, seed=0,
                      epsilon=0.1, pgd_steps=3, top_k=10, seeds=(0, 1), multiclass=dict(n_train=60, n_test=20),
                      authors_setting=None),
        # 600 / 400 uses every 3 and 5 of mnist-5k: the test set is as large as it can be.
        "default": dict(dataset="mnist-5k", classes=(3, 5), n_train=600, n_test=400, image_size=28, seed=0,
                        epsilon=0.1, pgd_steps=5, top_k=10, seeds=(0, 1, 2), multiclass=dict(n_train=500, n_test=100),
                        authors_setting=None),
        "paper": dict(dataset="mnist", classes=(3, 5), n_train=2000, n_test=1000, image_size=28, seed=0,
                      epsilon=0.1, pgd_steps=10, top_k=10, seeds=(0, 1, 2), multiclass=dict(n_train=2000, n_test=200),
                      authors_setting=dict(dataset="cifar10", classes=(0, 1), n_train=2000, n_test=100)),
    },
    "robustness_tradeoff": {
        "smoke": dict(dataset="mnist-5k", classes=(3, 5), n_train=64, n_test=32, image_size=14, seed=0,
                      epsilon=0.1, pgd_steps=3, n_ks=6, n_times=6, seeds=(0, 1)),
        "default": dict(dataset="mnist-5k", classes=(3, 5), n_train=600, n_test=400, image_size=28, seed=0,
                        epsilon=0.1, pgd_steps=10, n_ks=20, n_times=20, seeds=(0, 1, 2)),
        "paper": dict(dataset="mnist", classes=(3, 5), n_train=2000, n_test=1000, image_size=28, seed=0,
                      epsilon=0.1, pgd_steps=20, n_ks=30, n_times=30, seeds=(0, 1, 2)),
    },
    "architecture_consistency": {
        "smoke": dict(dataset="mnist-5k", classes=(3, 5), seed=0, epsilon=0.1, top_k=5, seeds=(0, 1),
                      scored=dict(image_size=8, n_train=40, n_test=16),
                      myrtle=dict(image_size=8, n_train=12, n_test=6, robustness=False)),
        "default": dict(dataset="mnist-5k", classes=(3, 5), seed=0, epsilon=0.1, top_k=20, seeds=(0, 1, 2),
                        scored=dict(image_size=14, n_train=200, n_test=50),
                        myrtle=dict(image_size=8, n_train=100, n_test=40, robustness=False)),
        "paper": dict(dataset="mnist", classes=(3, 5), seed=0, epsilon=0.1, top_k=50, seeds=(0, 1, 2),
                      scored=dict(image_size=28, n_train=1000, n_test=200),
                      myrtle=dict(image_size=28, n_train=1000, n_test=200, robustness=True)),
    },
    "adversarial_training_dynamics": {
        "smoke": dict(dataset="mnist-5k", classes=(3, 5), n_train=100, n_test=40, image_size=8, seed=0,
                      seeds=(0, 1), network="cnn", widths=(4, 8, 8), epochs=4, batch_size=25, learning_rate=0.3,
                      epsilon=0.1, pgd_steps=2, step_size=None, warmup_epochs=1, fgsm_random_start=True,
                      eval_steps=3, record_every=1, probe_size=8, top_k=3, settle_threshold=0.01,
                      norm_tolerance=0.1, linearise_fractions=(0.5,), linearise_tolerance=0.02),
        # Chosen on pilot runs (see the chapter): narrow enough and a rate high enough that
        # standard training turns the kernel, with a warm-up that lets adversarial training learn.
        "default": dict(dataset="mnist-5k", classes=(3, 5), n_train=600, n_test=200, image_size=14, seed=0,
                        seeds=(0, 1, 2), network="cnn", widths=(8, 16, 16), epochs=40, batch_size=50,
                        learning_rate=0.3, epsilon=0.1, pgd_steps=3, step_size=None, warmup_epochs=5,
                        fgsm_random_start=True, eval_steps=10, record_every=1, probe_size=32, top_k=10,
                        settle_threshold=0.01, norm_tolerance=0.1, linearise_fractions=(0.25, 0.5, 0.75),
                        linearise_tolerance=0.02),
        # The authors' CNN and settings (PAPER.md), except: average pooling for their max
        # pooling, three seeds (they ran one), a warm-up-free plain FGSM as theirs, and the
        # fixed probes and settling tests, which are ours.
        "paper": dict(dataset="cifar10", classes=None, n_train=50000, n_test=1000, image_size=32, seed=0,
                      seeds=(0, 1, 2), network="authors_cnn", widths=(32, 32, 64, 64, 128, 128), epochs=200,
                      batch_size=250, learning_rate=0.01, epsilon=8 / 255, pgd_steps=20, step_size=2 / 255,
                      warmup_epochs=0, fgsm_random_start=False, eval_steps=20, record_every=1, probe_size=250,
                      top_k=20, settle_threshold=0.01, norm_tolerance=0.1, linearise_fractions=(0.25, 0.5, 0.75),
                      linearise_tolerance=0.02),
    },
}


def settings(notebook: str, profile: str, **overrides) -> SimpleNamespace:
    """The sizes of ``notebook`` under ``profile``; an override that is not None wins."""
    if notebook not in SIZES:
        raise ValueError(f"no profiles for notebook {notebook!r}; known: {', '.join(SIZES)}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    sizes = dict(SIZES[notebook][profile])
    for name, value in overrides.items():
        if name not in sizes:
            raise ValueError(f"{notebook!r} has no setting {name!r}; settings: {', '.join(sizes)}")
        if value is not None:
            sizes[name] = value
    return SimpleNamespace(profile=profile, **sizes)
