"""valuedrift: trace how an LLM's expressed values drift during post-training.

Reproduces "Value Drifts: Tracing Value Alignment During LLM Post-Training"
(Kamath et al., 2025, arXiv 2510.26707). All logic lives in this package; the
Snakemake workflow only wires artifacts together.
"""

__version__ = "0.1.0"
