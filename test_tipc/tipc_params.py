"""Parser for test_tipc ``train_infer_python.txt`` files (PaddleOCR's TIPC format).

The file is a list of ``key:value`` lines grouped in sections::

    ===========================train_params===========================
    model_name:ch_PP-OCRv3_det_cml
    Global.epoch_num:lite_train_lite_infer=1|whole_train_whole_infer=500
    ...
    ===========================infer_params===========================
    --cpu_threads:1|2

Rules (all that this parser implements):

- A line ``===...name...===`` starts section ``name`` (``train_params``, ``eval_params``,
  ``infer_params``, ...). Lines ``##`` and empty lines are separators and ignored.
- ``key:value`` splits at the first colon. ``null:null`` lines are placeholders and ignored; a
  value ``null`` means "not used".
- A value may list alternatives separated by ``|``. An alternative written ``mode=value``
  applies only to that run mode (``lite_train_lite_infer``, ``whole_train_whole_infer``, ...);
  :meth:`TipcParams.value` picks the one for the mode.
- In ``infer_params``, keys starting with ``--`` are command-line flags of the inference
  script; their ``|`` alternatives form the parameter grid the runner iterates over.
"""
import itertools

#: run modes of PaddleOCR's TIPC scripts
MODES = ("lite_train_lite_infer", "lite_train_whole_infer", "whole_train_whole_infer",
         "whole_infer")


class TipcParams:
    """Parsed sections of a TIPC parameter file: ``params.section(name)[key] -> raw value``."""

    def __init__(self, sections):
        self.sections = sections

    @classmethod
    def parse(cls, path):
        sections, current = {}, None
        with open(path, encoding="utf-8") as handle:
            for number, raw in enumerate(handle, 1):
                line = raw.strip()
                if not line or line == "##":
                    continue
                if line.startswith("===") and line.endswith("==="):
                    current = line.strip("=").strip()
                    sections[current] = {}
                    continue
                if current is None or ":" not in line:
                    raise ValueError(f"{path}:{number}: expected a section header or "
                                     f"key:value, got {line!r}")
                key, value = line.split(":", 1)
                if key == "null":
                    continue
                sections[current][key.strip()] = value.strip()
        return cls(sections)

    def section(self, name):
        return self.sections.get(name, {})

    @staticmethod
    def resolve(raw, mode):
        """The alternatives of ``raw`` that apply to ``mode`` (``null`` -> [])."""
        if raw is None or raw == "null" or raw == "":
            return []
        chosen = []
        for alternative in raw.split("|"):
            prefix, _, rest = alternative.partition("=")
            if prefix in MODES:
                if prefix == mode:
                    chosen.append(rest)
            else:
                chosen.append(alternative)
        return chosen

    def value(self, section, key, mode, default=None):
        """The single value of ``key`` for ``mode`` (first alternative), or ``default``."""
        values = self.resolve(self.section(section).get(key), mode)
        return values[0] if values else default

    def flag_grid(self, section, mode, skip=()):
        """Every combination of the ``--flag`` alternatives of a section, as dicts."""
        flags = [(k, self.resolve(v, mode)) for k, v in self.section(section).items()
                 if k.startswith("--") and k not in skip]
        flags = [(k, vals) for k, vals in flags if vals]
        names = [k for k, _ in flags]
        for combo in itertools.product(*[vals for _, vals in flags]):
            yield dict(zip(names, combo))
