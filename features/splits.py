"""Train / valid / test splits. (Contract; the split functions are filled in below.)"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class Split:
    """Interactions and share records cut into train / valid / test, plus the social edges training
    may see (for a temporal split: only those at or before the cut). ``protocol`` names how it was
    made, for results files."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    social: pd.DataFrame
    train_shares: pd.DataFrame
    valid_shares: pd.DataFrame
    test_shares: pd.DataFrame
    protocol: str
    cut_ts: int | None = None
