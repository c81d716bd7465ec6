from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    IDENTIFY: _ClassVar[Mode]
    VERIFY: _ClassVar[Mode]
    LIVENESS_ONLY: _ClassVar[Mode]

class Challenge(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHALLENGE_UNSPECIFIED: _ClassVar[Challenge]
    BLINK: _ClassVar[Challenge]
    TURN_LEFT: _ClassVar[Challenge]
    TURN_RIGHT: _ClassVar[Challenge]
    LOOK_UP: _ClassVar[Challenge]

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    RGB8: _ClassVar[PixelFormat]
    BGR8: _ClassVar[PixelFormat]
    GRAY8: _ClassVar[PixelFormat]

class Hint(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HINT_UNSPECIFIED: _ClassVar[Hint]
    HINT_NO_FACE: _ClassVar[Hint]
    HINT_MOVE_CLOSER: _ClassVar[Hint]
    HINT_MOVE_BACK: _ClassVar[Hint]
    HINT_TOO_DARK: _ClassVar[Hint]
    HINT_TOO_BRIGHT: _ClassVar[Hint]
    HINT_BLURRY: _ClassVar[Hint]
    HINT_MULTIPLE_FACES: _ClassVar[Hint]
    HINT_CENTER_FACE: _ClassVar[Hint]
    HINT_HOLD_STILL: _ClassVar[Hint]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    ACCEPTED: _ClassVar[Outcome]
    REJECTED_SPOOF: _ClassVar[Outcome]
    REJECTED_UNKNOWN: _ClassVar[Outcome]
    REJECTED_CLAIM_MISMATCH: _ClassVar[Outcome]
    NO_FACE: _ClassVar[Outcome]
    TIMEOUT: _ClassVar[Outcome]
    CHALLENGE_FAILED: _ClassVar[Outcome]

class EnrollOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENROLL_OUTCOME_UNSPECIFIED: _ClassVar[EnrollOutcome]
    ENROLLED: _ClassVar[EnrollOutcome]
    ENROLL_REJECTED_SPOOF: _ClassVar[EnrollOutcome]
    ENROLL_NO_FACE: _ClassVar[EnrollOutcome]
MODE_UNSPECIFIED: Mode
IDENTIFY: Mode
VERIFY: Mode
LIVENESS_ONLY: Mode
CHALLENGE_UNSPECIFIED: Challenge
BLINK: Challenge
TURN_LEFT: Challenge
TURN_RIGHT: Challenge
LOOK_UP: Challenge
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
RGB8: PixelFormat
BGR8: PixelFormat
GRAY8: PixelFormat
HINT_UNSPECIFIED: Hint
HINT_NO_FACE: Hint
HINT_MOVE_CLOSER: Hint
HINT_MOVE_BACK: Hint
HINT_TOO_DARK: Hint
HINT_TOO_BRIGHT: Hint
HINT_BLURRY: Hint
HINT_MULTIPLE_FACES: Hint
HINT_CENTER_FACE: Hint
HINT_HOLD_STILL: Hint
OUTCOME_UNSPECIFIED: Outcome
ACCEPTED: Outcome
REJECTED_SPOOF: Outcome
REJECTED_UNKNOWN: Outcome
REJECTED_CLAIM_MISMATCH: Outcome
NO_FACE: Outcome
TIMEOUT: Outcome
CHALLENGE_FAILED: Outcome
ENROLL_OUTCOME_UNSPECIFIED: EnrollOutcome
ENROLLED: EnrollOutcome
ENROLL_REJECTED_SPOOF: EnrollOutcome
ENROLL_NO_FACE: EnrollOutcome

class RawImage(_message.Message):
    __slots__ = ("pixels", "width", "height", "format")
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    pixels: bytes
    width: int
    height: int
    format: PixelFormat
    def __init__(self, pixels: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., format: _Optional[_Union[PixelFormat, str]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("encoded", "raw", "timestamp_ms")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    timestamp_ms: int
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class SessionConfig(_message.Message):
    __slots__ = ("mode", "claimed_subject_id", "challenges", "client_id", "device_id", "max_frames", "realtime", "request_id")
    MODE_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CHALLENGES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    REALTIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    mode: Mode
    claimed_subject_id: str
    challenges: _containers.RepeatedScalarFieldContainer[Challenge]
    client_id: str
    device_id: str
    max_frames: int
    realtime: bool
    request_id: str
    def __init__(self, mode: _Optional[_Union[Mode, str]] = ..., claimed_subject_id: _Optional[str] = ..., challenges: _Optional[_Iterable[_Union[Challenge, str]]] = ..., client_id: _Optional[str] = ..., device_id: _Optional[str] = ..., max_frames: _Optional[int] = ..., realtime: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class AuthRequest(_message.Message):
    __slots__ = ("config", "frame")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    config: SessionConfig
    frame: Frame
    def __init__(self, config: _Optional[_Union[SessionConfig, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("left", "top", "right", "bottom")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    BOTTOM_FIELD_NUMBER: _ClassVar[int]
    left: float
    top: float
    right: float
    bottom: float
    def __init__(self, left: _Optional[float] = ..., top: _Optional[float] = ..., right: _Optional[float] = ..., bottom: _Optional[float] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("frame_index", "face_found", "box", "detection_score", "faces", "hints", "message", "frame_liveness_score", "checks")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    HINTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FRAME_LIVENESS_SCORE_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    frame_index: int
    face_found: bool
    box: Box
    detection_score: float
    faces: int
    hints: _containers.RepeatedScalarFieldContainer[Hint]
    message: str
    frame_liveness_score: float
    checks: _containers.RepeatedCompositeFieldContainer[CheckScore]
    def __init__(self, frame_index: _Optional[int] = ..., face_found: _Optional[bool] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., detection_score: _Optional[float] = ..., faces: _Optional[int] = ..., hints: _Optional[_Iterable[_Union[Hint, str]]] = ..., message: _Optional[str] = ..., frame_liveness_score: _Optional[float] = ..., checks: _Optional[_Iterable[_Union[CheckScore, _Mapping]]] = ...) -> None: ...

class ChallengePrompt(_message.Message):
    __slots__ = ("challenge", "message", "deadline_ms", "index", "total")
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    challenge: Challenge
    message: str
    deadline_ms: int
    index: int
    total: int
    def __init__(self, challenge: _Optional[_Union[Challenge, str]] = ..., message: _Optional[str] = ..., deadline_ms: _Optional[int] = ..., index: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class CheckScore(_message.Message):
    __slots__ = ("name", "score", "threshold", "passed", "applicable", "required", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    APPLICABLE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    score: float
    threshold: float
    passed: bool
    applicable: bool
    required: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., passed: _Optional[bool] = ..., applicable: _Optional[bool] = ..., required: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("subject_id", "display_name", "similarity", "threshold")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    display_name: str
    similarity: float
    threshold: float
    def __init__(self, subject_id: _Optional[str] = ..., display_name: _Optional[str] = ..., similarity: _Optional[float] = ..., threshold: _Optional[float] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("outcome", "live", "liveness_score", "liveness_threshold", "checks", "reasons", "spoof_cue_score", "match", "matched", "frames_received", "frames_with_face", "session_id", "elapsed_ms", "frames_skipped")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_SCORE_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    SPOOF_CUE_SCORE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_WITH_FACE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    live: bool
    liveness_score: float
    liveness_threshold: float
    checks: _containers.RepeatedCompositeFieldContainer[CheckScore]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    spoof_cue_score: float
    match: Match
    matched: bool
    frames_received: int
    frames_with_face: int
    session_id: str
    elapsed_ms: float
    frames_skipped: int
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., live: _Optional[bool] = ..., liveness_score: _Optional[float] = ..., liveness_threshold: _Optional[float] = ..., checks: _Optional[_Iterable[_Union[CheckScore, _Mapping]]] = ..., reasons: _Optional[_Iterable[str]] = ..., spoof_cue_score: _Optional[float] = ..., match: _Optional[_Union[Match, _Mapping]] = ..., matched: _Optional[bool] = ..., frames_received: _Optional[int] = ..., frames_with_face: _Optional[int] = ..., session_id: _Optional[str] = ..., elapsed_ms: _Optional[float] = ..., frames_skipped: _Optional[int] = ...) -> None: ...

class AuthResponse(_message.Message):
    __slots__ = ("progress", "challenge", "decision")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    challenge: ChallengePrompt
    decision: Decision
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., challenge: _Optional[_Union[ChallengePrompt, _Mapping]] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class EnrollConfig(_message.Message):
    __slots__ = ("subject_id", "display_name", "replace", "skip_liveness")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    SKIP_LIVENESS_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    display_name: str
    replace: bool
    skip_liveness: bool
    def __init__(self, subject_id: _Optional[str] = ..., display_name: _Optional[str] = ..., replace: _Optional[bool] = ..., skip_liveness: _Optional[bool] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("config", "frame")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    config: EnrollConfig
    frame: Frame
    def __init__(self, config: _Optional[_Union[EnrollConfig, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class Subject(_message.Message):
    __slots__ = ("subject_id", "display_name", "samples", "created_unix_ms", "updated_unix_ms")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    display_name: str
    samples: int
    created_unix_ms: int
    updated_unix_ms: int
    def __init__(self, subject_id: _Optional[str] = ..., display_name: _Optional[str] = ..., samples: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., updated_unix_ms: _Optional[int] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("outcome", "subject", "liveness", "reasons")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    outcome: EnrollOutcome
    subject: Subject
    liveness: Decision
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, outcome: _Optional[_Union[EnrollOutcome, str]] = ..., subject: _Optional[_Union[Subject, _Mapping]] = ..., liveness: _Optional[_Union[Decision, _Mapping]] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckLivenessRequest(_message.Message):
    __slots__ = ("frame",)
    FRAME_FIELD_NUMBER: _ClassVar[int]
    frame: Frame
    def __init__(self, frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class GetSubjectRequest(_message.Message):
    __slots__ = ("subject_id",)
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ...) -> None: ...

class ListSubjectsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSubjectsResponse(_message.Message):
    __slots__ = ("subjects", "next_page_token", "total")
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    subjects: _containers.RepeatedCompositeFieldContainer[Subject]
    next_page_token: str
    total: int
    def __init__(self, subjects: _Optional[_Iterable[_Union[Subject, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class DeleteSubjectRequest(_message.Message):
    __slots__ = ("subject_id",)
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ...) -> None: ...

class DeleteSubjectResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("event_id", "time_unix_ms", "action", "key_id", "client_id", "device_id", "peer", "mode", "outcome", "subject_id", "session_id", "scores", "request_id")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    time_unix_ms: int
    action: str
    key_id: str
    client_id: str
    device_id: str
    peer: str
    mode: str
    outcome: str
    subject_id: str
    session_id: str
    scores: _containers.ScalarMap[str, float]
    request_id: str
    def __init__(self, event_id: _Optional[int] = ..., time_unix_ms: _Optional[int] = ..., action: _Optional[str] = ..., key_id: _Optional[str] = ..., client_id: _Optional[str] = ..., device_id: _Optional[str] = ..., peer: _Optional[str] = ..., mode: _Optional[str] = ..., outcome: _Optional[str] = ..., subject_id: _Optional[str] = ..., session_id: _Optional[str] = ..., scores: _Optional[_Mapping[str, float]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
