"""Draw experiments/figures/augmentation.png: MNIST originals beside augmented versions.

    NETLAB_DATA=DIR python experiments/plot_augmentation.py    # DIR holds mnist/
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from netlab import backend, data  # noqa: E402

ROWS, COPIES = 6, 6


def main():
    xp = backend.namespace("numpy")
    splits = data.load(xp, "mnist", download=False)
    originals = splits.train_x[:ROWS]
    augment = data.Augment(degrees=12.0, blotch_p=0.2, noise_p=0.2)  # all four, as the report had them
    rng = backend.Generator(0)
    copies = [backend.to_numpy(augment(xp, originals, rng)) for _ in range(COPIES)]
    fig, axes = plt.subplots(ROWS, COPIES + 1, figsize=(1.3 * (COPIES + 1), 1.3 * ROWS))
    for r in range(ROWS):
        images = [backend.to_numpy(originals)[r, 0]] + [c[r, 0] for c in copies]
        for c, img in enumerate(images):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"augmented {c}", fontsize=8)
    fig.suptitle("The report's four augmentations: rotation, translation, blotches, noise", fontsize=9)
    fig.tight_layout()
    out = Path(__file__).parent / "figures" / "augmentation.png"
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
