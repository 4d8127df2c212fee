"""The kinds of SASV trial and of CM utterance, spelled as the ASVspoof 2019 protocols and the SASV 2022 score
files spell them: the one place every reader, sampler, metric and back-end takes them from."""
from __future__ import annotations

TARGET, NONTARGET, SPOOF = "target", "nontarget", "spoof"
SASV_KEYS = (TARGET, NONTARGET, SPOOF)         # SASV trial keys (last column of a trial list)
BONAFIDE = "bonafide"
CM_KEYS = (BONAFIDE, SPOOF)                    # CM protocol keys
UNKNOWN_ATTACK = "unknown"                     # the attack of a spoof whose list does not name it (In-the-Wild, lists)
