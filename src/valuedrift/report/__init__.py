"""The study's figures, tables readers and static HTML report.

* :mod:`.figures`: altair charts and their file-in/file-out figure steps;
* :mod:`.readers`: training logs out of checkpoints, judge accounting;
* :mod:`.page`: the report page's sections, rendered from ``templates/`` (Jinja2).
"""

from .figures import comparison_figure, heatmap_figure, sweep_figure, trajectory_figure, training_figure
from .page import write_report
from .readers import write_training_log

__all__ = ["comparison_figure", "heatmap_figure", "sweep_figure", "trajectory_figure", "training_figure", "write_report",
           "write_training_log"]
