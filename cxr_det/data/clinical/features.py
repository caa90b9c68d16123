"""Clinical features for fusion models: cleaning of raw values, imputation, normalisation.

:class:`ClinicalFeaturizer` turns one raw clinical record (a dict from
:mod:`cxr_det.data.clinical.tables`, or None when an image has none) into three arrays:
normalised numeric values, 0/1 missing indicators, and category indices. Its statistics
(means, standard deviations, vocabularies) are learnt on the training split only and are
stored as JSON so that evaluation and inference reuse them unchanged.

Cleaning (Celsius, ranges, text in numeric columns) is described, with the per-feature
ranges table, in :mod:`cxr_det.data.clinical.cleaning`. Category indices: 0 is "unknown"
(missing, or a value not seen in training); seen values get 1..k in sorted order. Every cleaning event is
counted per feature and reported once per dataset (:meth:`ClinicalFeaturizer.fit`,
:meth:`ClinicalFeaturizer.transform_many`): one logged summary and
``featurizer.report[dataset]``. :meth:`ClinicalFeaturizer.transform` is silent (it is meant for
per-image use inside data loaders).
"""
import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from cxr_det.utils.atomic import atomic_write_text
from cxr_det.data.clinical.cleaning import (
    CELSIUS_RANGE,
    DEFAULT_CATEGORICAL,
    DEFAULT_NUMERIC,
    FEATURE_RANGES,
    check_ranges,
    clean_category,
    clean_numeric,
)

__all__ = ["ClinicalFeaturizer", "NotFittedError"]

logger = logging.getLogger(__name__)

STATE_FORMAT = "cxr_det.clinical_featurizer"
STATE_VERSION = 1


class NotFittedError(RuntimeError):
    """The featurizer has no statistics yet (neither fitted nor loaded)."""


def _check_names(kind, names):
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"ClinicalFeaturizer: duplicate {kind} feature names in {names}")
    return names


class ClinicalFeaturizer:
    """Raw clinical record -> (normalised numeric, missing indicators, category indices).

    Args:
        numeric: numeric feature names (keys of the raw records).
        categorical: categorical feature names.
        ranges: per-feature ``(low, high[, policy])`` overriding :data:`FEATURE_RANGES`
            (a value of None removes a feature's range check).
        celsius_range: temperatures inside it are converted from Celsius; None disables.

    Use :meth:`fit` on the training records, then :meth:`transform` /
    :meth:`transform_many`; store the statistics with :meth:`save` / :meth:`state_dict`.
    """

    def __init__(self, numeric=DEFAULT_NUMERIC, categorical=DEFAULT_CATEGORICAL, ranges=None,
                 celsius_range=CELSIUS_RANGE):
        self.numeric = _check_names("numeric", numeric)
        self.categorical = _check_names("categorical", categorical)
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f"ClinicalFeaturizer: features both numeric and categorical: {sorted(both)}")
        merged = {name: FEATURE_RANGES[name] for name in self.numeric if name in FEATURE_RANGES}
        for name, bounds in (ranges or {}).items():
            if bounds is None:
                merged.pop(name, None)
            else:
                merged[name] = bounds
        self.ranges = check_ranges(merged)
        self.celsius_range = tuple(float(v) for v in celsius_range) if celsius_range else None
        self.mean = self.std = None
        self.vocab = None
        self.n_fit = 0
        self.report = {}

    @classmethod
    def from_config(cls, cfg):
        """A featurizer for ``cfg.CXR.CLINICAL.NUMERIC`` / ``CATEGORICAL`` (unfitted)."""
        return cls(numeric=list(cfg.CXR.CLINICAL.NUMERIC), categorical=list(cfg.CXR.CLINICAL.CATEGORICAL))

    # ----------------------------------------------------------------- properties
    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @property
    def numeric_dim(self) -> int:
        return len(self.numeric)

    @property
    def categorical_cardinalities(self):
        """Number of indices per categorical feature (vocabulary + the unknown index 0)."""
        self._require_fitted()
        return [len(self.vocab[name]) + 1 for name in self.categorical]

    def _require_fitted(self):
        if not self.fitted:
            raise NotFittedError(
                "ClinicalFeaturizer is not fitted: call fit(<training records>) or load the statistics "
                "saved at training time (ClinicalFeaturizer.load(path) / load_state_dict(state))"
            )

    # ------------------------------------------------------------------- cleaning
    def clean(self, record, counts=None):
        """``(values float64[n] with NaN for missing, [category or None])`` of one raw record.

        ``counts``: optional ``{feature: Counter}`` receiving the cleaning events.
        """
        values = np.full(len(self.numeric), np.nan)
        categories = [None] * len(self.categorical)
        if record is None:
            return values, categories
        for i, name in enumerate(self.numeric):
            v, events = clean_numeric(name, record.get(name), self.ranges, self.celsius_range)
            values[i] = v
            if counts is not None:
                counts[name].update(events)
        for j, name in enumerate(self.categorical):
            categories[j] = clean_category(name, record.get(name))
        return values, categories

    def _clean_all(self, records):
        counts = defaultdict(Counter)
        values = np.full((len(records), len(self.numeric)), np.nan)
        categories = []
        no_record = 0
        for k, record in enumerate(records):
            if record is None:
                no_record += 1
            elif not hasattr(record, "get"):
                raise TypeError(f"ClinicalFeaturizer: record {k} is a {type(record).__name__}, expected a dict or None")
            values[k], cats = self.clean(record, counts)
            categories.append(cats)
        return values, categories, counts, no_record

    def _index(self, name, category):
        if category is None:
            return 0
        return self._lookup[name].get(category, 0)

    def _make_report(self, dataset, values, categories, counts, no_record):
        numeric = {}
        for i, name in enumerate(self.numeric):
            entry = {"missing": int(np.isnan(values[:, i]).sum())}
            entry.update({event: int(n) for event, n in sorted(counts[name].items()) if n})
            numeric[name] = entry
        categorical = {}
        for j, name in enumerate(self.categorical):
            column = [c[j] for c in categories]
            entry = {"missing": sum(c is None for c in column)}
            if self.fitted:
                entry["unknown"] = sum(c is not None and c not in self._lookup[name] for c in column)
            categorical[name] = entry
        report = {"records": len(values), "no_record": int(no_record), "numeric": numeric, "categorical": categorical}
        self.report[dataset] = report
        self._log_report(dataset, report)
        return report

    @staticmethod
    def _log_report(dataset, report):
        lines = []
        for kind in ("numeric", "categorical"):
            for name, entry in report[kind].items():
                if any(entry.values()):
                    details = ", ".join(f"{event} {n}" for event, n in entry.items() if n)
                    lines.append(f"  {name}: {details}")
        head = (f"clinical features of {dataset!r}: {report['records']} record(s), "
                f"{report['no_record']} without clinical data")
        if lines or report["no_record"]:
            logger.warning("%s; cleaning (missing = all missing after cleaning, imputed):\n%s", head, "\n".join(lines))
        else:
            logger.info("%s; no value needed cleaning", head)

    # ------------------------------------------------------------ fit / transform
    def fit(self, records, dataset="train"):
        """Learn means, standard deviations and vocabularies from the training records.

        ``records``: raw clinical dicts (None for images without clinical data). Means and
        (population) standard deviations are over the cleaned, non-missing values; a feature
        with no value gets mean 0 and std 1, a constant one std 1. Returns ``self``.
        """
        records = list(records)
        if not records:
            raise ValueError("ClinicalFeaturizer.fit: no training records")
        values, categories, counts, no_record = self._clean_all(records)
        mean, std = np.zeros(len(self.numeric)), np.ones(len(self.numeric))
        for i, name in enumerate(self.numeric):
            column = values[:, i][~np.isnan(values[:, i])]
            if column.size == 0:
                logger.warning("clinical feature %r has no value in %r: mean 0, std 1 (always imputed)", name, dataset)
                continue
            mean[i] = column.mean()
            s = column.std()
            std[i] = s if s > 0 else 1.0
        self.mean, self.std = mean, std
        self.vocab = {
            name: sorted({c[j] for c in categories if c[j] is not None}) for j, name in enumerate(self.categorical)
        }
        self._build_lookup()
        self.n_fit = len(records)
        self._make_report(dataset, values, categories, counts, no_record)
        return self

    def _build_lookup(self):
        self._lookup = {name: {c: i + 1 for i, c in enumerate(self.vocab[name])} for name in self.categorical}

    def _encode(self, values, categories):
        missing = np.isnan(values)
        numeric = np.where(missing, 0.0, (np.nan_to_num(values) - self.mean) / self.std)
        codes = [[self._index(name, c[j]) for j, name in enumerate(self.categorical)] for c in categories]
        return (
            numeric.astype(np.float32),
            missing.astype(np.float32),
            np.asarray(codes, dtype=np.int64).reshape(len(categories), len(self.categorical)),
        )

    def transform(self, record):
        """``(numeric float32[n], missing float32[n], categorical int64[m])`` of one record.

        Missing values (and every value of a None record) are imputed with the training mean
        (normalised 0) and flagged 1; unknown or missing categories get index 0. Silent: use
        :meth:`transform_many` to have a dataset's cleaning reported.
        """
        self._require_fitted()
        values, categories = self.clean(record)
        numeric, missing, codes = self._encode(values[None], [categories])
        return numeric[0], missing[0], codes[0]

    def transform_many(self, records, dataset="dataset"):
        """Stacked :meth:`transform` of many records (arrays [N, n], [N, n], [N, m]).

        Counts every cleaning event of ``records``, stores them in ``report[dataset]`` and
        logs one summary.
        """
        self._require_fitted()
        records = list(records)
        values, categories, counts, no_record = self._clean_all(records)
        self._make_report(dataset, values, categories, counts, no_record)
        return self._encode(values, categories)

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """JSON-serialisable statistics and cleaning rules (plain python types)."""
        self._require_fitted()
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "ranges": {name: [low, high, policy] for name, (low, high, policy) in self.ranges.items()},
            "celsius_range": list(self.celsius_range) if self.celsius_range else None,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "vocab": {name: list(self.vocab[name]) for name in self.categorical},
            "n_fit": int(self.n_fit),
        }

    def load_state_dict(self, state):
        """Restore statistics saved by :meth:`state_dict`.

        The feature lists must equal this featurizer's (a config that asks for other
        features than the model was trained with is an error); the saved cleaning rules
        replace this featurizer's so that values are cleaned exactly as in training.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError("ClinicalFeaturizer.load_state_dict: not a clinical featurizer state")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"ClinicalFeaturizer.load_state_dict: unsupported version {state.get('version')!r}")
        for kind in ("numeric", "categorical"):
            if list(state[kind]) != list(getattr(self, kind)):
                raise ValueError(
                    f"ClinicalFeaturizer.load_state_dict: saved {kind} features {state[kind]} differ from "
                    f"the configured ones {getattr(self, kind)}"
                )
        n = len(self.numeric)
        mean, std = np.asarray(state["mean"], dtype=np.float64), np.asarray(state["std"], dtype=np.float64)
        if mean.shape != (n,) or std.shape != (n,) or not np.all(np.isfinite(mean)) or not np.all(std > 0):
            raise ValueError("ClinicalFeaturizer.load_state_dict: mean/std must be finite lists of one value per "
                             "numeric feature, std > 0")
        missing_vocab = [name for name in self.categorical if name not in state["vocab"]]
        if missing_vocab:
            raise ValueError(f"ClinicalFeaturizer.load_state_dict: no vocabulary for {missing_vocab}")
        self.ranges = check_ranges({k: tuple(v) for k, v in state["ranges"].items()})
        self.celsius_range = tuple(state["celsius_range"]) if state.get("celsius_range") else None
        self.mean, self.std = mean, std
        self.vocab = {name: [str(c) for c in state["vocab"][name]] for name in self.categorical}
        self._build_lookup()
        self.n_fit = int(state.get("n_fit", 0))
        return self

    def save(self, path):
        """Write :meth:`state_dict` as JSON, atomically (parent folders created). Returns the path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.state_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path):
        """A fitted featurizer from a JSON file written by :meth:`save`."""
        path = Path(path)
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: clinical featurizer statistics not found") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(state, dict) or "numeric" not in state or "categorical" not in state:
            raise ValueError(f"{path}: not a clinical featurizer state")
        return cls(numeric=state["numeric"], categorical=state["categorical"]).load_state_dict(state)

    def __repr__(self):
        status = f"fitted on {self.n_fit}" if self.fitted else "not fitted"
        return f"ClinicalFeaturizer(numeric={self.numeric}, categorical={self.categorical}, {status})"
