"""Time the README's "30-second example", as a reader would run it.

Extracts the first ``python`` code block of ``README.md`` and runs it in this process, printing its
output, then the wall time and the CPU time of the process (imports included). Run from the
repository root, on one thread as the README's figure is measured::

    OMP_NUM_THREADS=1 python benchmarks/readme_example.py
"""

import os
import platform
import re
import time
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example():
    """The code of the first ``python`` block of the README."""
    return re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)


def main():
    code = readme_example()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    )
    wall, cpu = time.perf_counter(), time.process_time()
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"README example: {wall:.1f} s wall, {cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
