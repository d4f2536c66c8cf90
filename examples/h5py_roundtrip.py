"""Write an HDF5 file of numpy arrays through an ecmem mount, close it, read it back.

python examples/h5py_roundtrip.py /mnt/ecmem/data.h5
"""

from __future__ import annotations

import sys

import h5py
import numpy as np


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "grid/temperature": rng.random((256, 256, 16)),
        "grid/pressure": rng.random((512, 512)).astype(np.float32),
        "particles/ids": np.arange(1_000_000, dtype=np.int64),
    }


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    path = sys.argv[1]
    data = arrays()
    with h5py.File(path, "w") as f:
        for name, a in data.items():
            f.create_dataset(name, data=a, chunks=True, compression="gzip", compression_opts=1)
        f.attrs["step"] = 42
    with h5py.File(path, "r") as f:
        bad = [name for name, a in data.items() if not np.array_equal(f[name][...], a)]
        step = int(f.attrs["step"])
    if bad or step != 42:
        print(f"{path}: read back differs in {bad or ['attrs']}")
        return 1
    print(f"{path}: {len(data)} datasets written, closed and read back identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
