"""Speed benchmarks of the project on the machine at hand: `make bench` (= `python -m benchmarks.run`).

Each module measures one thing on synthetic inputs of the real shape; `benchmarks.run` runs them all in one
process (so the project's way and the plain way peers use share the machine state) and writes
`reports/bench.md` with the figures and the device that produced them.
"""
