"""Write tests/data/mnist-small: the first 600 training and 200 test digits of real MNIST as IDX.

    python tests/data/make_fixture.py PATH/TO/MNIST

Being a subset, the files do not match the official checksums: load them with verify=False.
"""

import sys
from pathlib import Path

from netlab.data.files import DATASETS, SPLITS, find_file, load_split
from netlab.data.idx import write

N_TRAIN, N_TEST = 600, 200


def main(source: str) -> None:
    out = Path(__file__).parent / "mnist-small"
    out.mkdir(exist_ok=True)
    spec = DATASETS["mnist"]
    for split, count in (("train", N_TRAIN), ("test", N_TEST)):
        image_name, label_name = SPLITS[split]
        images, labels = load_split(spec, Path(source), split, verify=True)
        write(out / f"{image_name}.gz", images[:count])
        write(out / f"{label_name}.gz", labels[:count])
    print("wrote", sorted(p.name for p in out.iterdir()), "from", find_file(Path(source), "train-images-idx3-ubyte"))


if __name__ == "__main__":
    main(sys.argv[1])
