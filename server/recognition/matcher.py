"""The in-memory 1:N / 1:1 matcher over 128-d templates, whatever gallery backend stores them.

Every template sits in one float32 matrix with the squared norms beside it, so 1:N search is
one matrix-vector product: |t - q|^2 = |t|^2 - 2 t.q + |q|^2. Not thread-safe on its own: the
gallery that owns it serialises writes and reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facegate.server.errors import InvalidInput, NotFound

TEMPLATE_DIM = 128


@dataclass(frozen=True)
class Subject:
    subject_id: str
    display_name: str
    samples: int
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class MatchResult:
    subject: Subject
    similarity: float  # 1 - euclidean distance
    threshold: float

    @property
    def matched(self) -> bool:
        return self.similarity >= self.threshold


def as_template(template: np.ndarray) -> np.ndarray:
    """``template`` as a flat float32 (128,) array; INVALID_ARGUMENT otherwise."""
    t = np.asarray(template, np.float32).reshape(-1)
    if t.shape != (TEMPLATE_DIM,):
        raise InvalidInput(f"template must have {TEMPLATE_DIM} values", "template")
    return t


class Matcher:
    """Subjects and their templates in memory, matched at ``threshold`` (similarity).

    Rows live in a buffer that grows by doubling, so an enrolment into a gallery of a million
    is O(1) amortised (no copy of the matrix); a delete moves the last row into the hole.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.load([], np.zeros((0, TEMPLATE_DIM), np.float32))

    def load(self, subjects: Sequence[Subject], matrix: np.ndarray) -> None:
        """Replace everything: ``matrix`` row i is ``subjects[i]``'s template."""
        self._subjects = list(subjects)
        self._n = len(self._subjects)
        self._buf = np.asarray(matrix, np.float32).reshape(self._n, TEMPLATE_DIM)
        self._norm_buf = np.einsum("ij,ij->i", self._buf, self._buf)
        self._index = {s.subject_id: i for i, s in enumerate(self._subjects)}

    @property
    def _matrix(self) -> np.ndarray:
        return self._buf[:self._n]

    @property
    def _norms(self) -> np.ndarray:
        return self._norm_buf[:self._n]

    def __len__(self) -> int:
        return self._n

    def __contains__(self, subject_id: str) -> bool:
        return subject_id in self._index

    def put(self, subject: Subject, template: np.ndarray) -> None:
        """Add a subject or replace its template (no reload of the others)."""
        t = as_template(template)
        i = self._index.get(subject.subject_id)
        if i is None:  # a new row at the end
            if self._n == len(self._buf):
                grown = np.zeros((max(16, 2 * self._n), TEMPLATE_DIM), np.float32)
                grown[:self._n] = self._matrix
                norms = np.zeros(len(grown), np.float32)
                norms[:self._n] = self._norms
                self._buf, self._norm_buf = grown, norms
            i = self._n
            self._index[subject.subject_id] = i
            self._subjects.append(subject)
            self._n += 1
        else:
            self._subjects[i] = subject
        self._buf[i] = t
        self._norm_buf[i] = t @ t

    def remove(self, subject_id: str) -> bool:
        """Drop a subject; False when it was not there."""
        i = self._index.pop(subject_id, None)
        if i is None:
            return False
        last = self._n - 1
        if i != last:  # the last row fills the hole
            moved = self._subjects[last]
            self._subjects[i] = moved
            self._buf[i] = self._buf[last]
            self._norm_buf[i] = self._norm_buf[last]
            self._index[moved.subject_id] = i
        self._subjects.pop()
        self._n = last
        return True

    def get(self, subject_id: str) -> Subject:
        i = self._index.get(subject_id)
        if i is None:
            raise NotFound(f"no subject {subject_id!r}", "subject_id")
        return self._subjects[i]

    def template(self, subject_id: str) -> np.ndarray:
        self.get(subject_id)
        return self._buf[self._index[subject_id]].copy()

    def identify(self, query: np.ndarray) -> MatchResult | None:
        """The nearest template (1:N); None when empty. Matched when over threshold."""
        if not self._n:
            return None
        q = np.asarray(query, np.float32).reshape(-1)
        d2 = self._norms - 2.0 * (self._matrix @ q)  # + |q|^2, the same for every row
        i = int(np.argmin(d2))
        d = float(np.linalg.norm(self._buf[i] - q))  # exact for the winner
        return MatchResult(self._subjects[i], 1.0 - d, self.threshold)

    def verify(self, subject_id: str, query: np.ndarray) -> MatchResult:
        """1:1 against ``subject_id``'s template."""
        subject = self.get(subject_id)
        t = self._buf[self._index[subject_id]]
        d = float(np.linalg.norm(t - np.asarray(query, np.float32)))
        return MatchResult(subject, 1.0 - d, self.threshold)
