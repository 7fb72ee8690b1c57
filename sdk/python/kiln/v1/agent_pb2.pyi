from kiln.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

BUILD_RESULT_FAILURE: BuildResult
BUILD_RESULT_INFRASTRUCTURE: BuildResult
BUILD_RESULT_LOG_TOO_LARGE: BuildResult
BUILD_RESULT_OUTPUT_TOO_LARGE: BuildResult
BUILD_RESULT_SILENT_TIMEOUT: BuildResult
BUILD_RESULT_SUCCESS: BuildResult
BUILD_RESULT_TIMEOUT: BuildResult
BUILD_RESULT_UNSPECIFIED: BuildResult
DESCRIPTOR: _descriptor.FileDescriptor
REPORT_KIND_BUILD_FINISHED: ReportKind
REPORT_KIND_BUILD_STARTED: ReportKind
REPORT_KIND_SETUP_FAILURE: ReportKind
REPORT_KIND_UNSPECIFIED: ReportKind
SETUP_FAILURE_REASON_COULD_NOT_DELETE_OUTPUTS: SetupFailureReason
SETUP_FAILURE_REASON_MISSING_INPUTS: SetupFailureReason
SETUP_FAILURE_REASON_OTHER: SetupFailureReason
SETUP_FAILURE_REASON_UNSPECIFIED: SetupFailureReason

class Acknowledged(_message.Message):
    __slots__ = ["build_id", "refusal", "warning"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    refusal: Refusal
    warning: str
    def __init__(self, build_id: _Optional[str] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ..., warning: _Optional[str] = ...) -> None: ...

class AssignBuild(_message.Message):
    __slots__ = ["attempt", "build_id", "derivation", "derivation_path", "max_silent_seconds", "outputs", "priority", "timeout_seconds", "traceparent"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    MAX_SILENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    build_id: str
    derivation: bytes
    derivation_path: str
    max_silent_seconds: int
    outputs: _containers.RepeatedCompositeFieldContainer[_types_pb2.DerivationOutput]
    priority: int
    timeout_seconds: int
    traceparent: str
    def __init__(self, build_id: _Optional[str] = ..., derivation_path: _Optional[str] = ..., derivation: _Optional[bytes] = ..., outputs: _Optional[_Iterable[_Union[_types_pb2.DerivationOutput, _Mapping]]] = ..., priority: _Optional[int] = ..., traceparent: _Optional[str] = ..., timeout_seconds: _Optional[int] = ..., max_silent_seconds: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class BuildFinished(_message.Message):
    __slots__ = ["build_id", "message", "outputs", "result"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    message: str
    outputs: _containers.RepeatedCompositeFieldContainer[OutputInfo]
    result: BuildResult
    def __init__(self, build_id: _Optional[str] = ..., result: _Optional[_Union[BuildResult, str]] = ..., outputs: _Optional[_Iterable[_Union[OutputInfo, _Mapping]]] = ..., message: _Optional[str] = ...) -> None: ...

class BuildStarted(_message.Message):
    __slots__ = ["build_id"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    def __init__(self, build_id: _Optional[str] = ...) -> None: ...

class CancelBuild(_message.Message):
    __slots__ = ["build_id", "reason"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    reason: str
    def __init__(self, build_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ["build_finished", "build_started", "heartbeat", "hello", "load_report", "setup_failure"]
    BUILD_FINISHED_FIELD_NUMBER: _ClassVar[int]
    BUILD_STARTED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    LOAD_REPORT_FIELD_NUMBER: _ClassVar[int]
    SETUP_FAILURE_FIELD_NUMBER: _ClassVar[int]
    build_finished: BuildFinished
    build_started: BuildStarted
    heartbeat: Heartbeat
    hello: Hello
    load_report: LoadReport
    setup_failure: SetupFailure
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., load_report: _Optional[_Union[LoadReport, _Mapping]] = ..., build_started: _Optional[_Union[BuildStarted, _Mapping]] = ..., setup_failure: _Optional[_Union[SetupFailure, _Mapping]] = ..., build_finished: _Optional[_Union[BuildFinished, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ["acknowledged", "assign_build", "cancel_build", "drain", "ping", "welcome"]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_BUILD_FIELD_NUMBER: _ClassVar[int]
    CANCEL_BUILD_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    acknowledged: Acknowledged
    assign_build: AssignBuild
    cancel_build: CancelBuild
    drain: Drain
    ping: Ping
    welcome: Welcome
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assign_build: _Optional[_Union[AssignBuild, _Mapping]] = ..., cancel_build: _Optional[_Union[CancelBuild, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., acknowledged: _Optional[_Union[Acknowledged, _Mapping]] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ["sequence"]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ["cpu_count", "held_build_ids", "mandatory_features", "max_parallel_builds", "system_features", "systems", "tags", "version"]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    HELD_BUILD_IDS_FIELD_NUMBER: _ClassVar[int]
    MANDATORY_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_BUILDS_FIELD_NUMBER: _ClassVar[int]
    SYSTEMS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FEATURES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    cpu_count: int
    held_build_ids: _containers.RepeatedScalarFieldContainer[str]
    mandatory_features: _containers.RepeatedScalarFieldContainer[str]
    max_parallel_builds: int
    system_features: _containers.RepeatedScalarFieldContainer[str]
    systems: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    version: str
    def __init__(self, systems: _Optional[_Iterable[str]] = ..., max_parallel_builds: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ..., version: _Optional[str] = ..., held_build_ids: _Optional[_Iterable[str]] = ..., cpu_count: _Optional[int] = ..., system_features: _Optional[_Iterable[str]] = ..., mandatory_features: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadReport(_message.Message):
    __slots__ = ["free_disk_bytes", "free_slots", "load_average"]
    FREE_DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    free_disk_bytes: int
    free_slots: int
    load_average: float
    def __init__(self, free_slots: _Optional[int] = ..., load_average: _Optional[float] = ..., free_disk_bytes: _Optional[int] = ...) -> None: ...

class OutputInfo(_message.Message):
    __slots__ = ["name", "nar_hash", "nar_lz4", "nar_size", "path", "references"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAR_HASH_FIELD_NUMBER: _ClassVar[int]
    NAR_LZ4_FIELD_NUMBER: _ClassVar[int]
    NAR_SIZE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    nar_hash: str
    nar_lz4: bytes
    nar_size: int
    path: str
    references: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., nar_hash: _Optional[str] = ..., nar_size: _Optional[int] = ..., references: _Optional[_Iterable[str]] = ..., nar_lz4: _Optional[bytes] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ["sequence"]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class QueryUploadRequest(_message.Message):
    __slots__ = ["build_id", "output_name"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    output_name: str
    def __init__(self, build_id: _Optional[str] = ..., output_name: _Optional[str] = ...) -> None: ...

class QueryUploadResponse(_message.Message):
    __slots__ = ["complete", "offset"]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    complete: bool
    offset: int
    def __init__(self, offset: _Optional[int] = ..., complete: bool = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ["code", "message", "report"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    report: ReportKind
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., report: _Optional[_Union[ReportKind, str]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ["agent_id", "password", "tags"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    password: str
    tags: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    def __init__(self, agent_id: _Optional[str] = ..., password: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ...) -> None: ...

class SetupFailure(_message.Message):
    __slots__ = ["build_id", "message", "missing_inputs", "reason"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MISSING_INPUTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    message: str
    missing_inputs: _containers.RepeatedScalarFieldContainer[str]
    reason: SetupFailureReason
    def __init__(self, build_id: _Optional[str] = ..., reason: _Optional[_Union[SetupFailureReason, str]] = ..., missing_inputs: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ...) -> None: ...

class Substituter(_message.Message):
    __slots__ = ["public_keys", "url"]
    PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    public_keys: _containers.RepeatedScalarFieldContainer[str]
    url: str
    def __init__(self, url: _Optional[str] = ..., public_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ["build_id", "nar_size", "offset", "output_name", "references", "store_path"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    NAR_SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    STORE_PATH_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    nar_size: int
    offset: int
    output_name: str
    references: _containers.RepeatedScalarFieldContainer[str]
    store_path: str
    def __init__(self, build_id: _Optional[str] = ..., output_name: _Optional[str] = ..., store_path: _Optional[str] = ..., offset: _Optional[int] = ..., references: _Optional[_Iterable[str]] = ..., nar_size: _Optional[int] = ...) -> None: ...

class UploadLogRequest(_message.Message):
    __slots__ = ["build_id", "chunk"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    chunk: bytes
    def __init__(self, build_id: _Optional[str] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadLogResponse(_message.Message):
    __slots__ = ["size"]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    size: int
    def __init__(self, size: _Optional[int] = ...) -> None: ...

class UploadOutputRequest(_message.Message):
    __slots__ = ["chunk", "header", "trailer"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    header: UploadHeader
    trailer: UploadTrailer
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., trailer: _Optional[_Union[UploadTrailer, _Mapping]] = ...) -> None: ...

class UploadOutputResponse(_message.Message):
    __slots__ = ["file_hash", "file_size"]
    FILE_HASH_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    file_hash: str
    file_size: int
    def __init__(self, file_hash: _Optional[str] = ..., file_size: _Optional[int] = ...) -> None: ...

class UploadTrailer(_message.Message):
    __slots__ = ["nar_hash", "nar_size"]
    NAR_HASH_FIELD_NUMBER: _ClassVar[int]
    NAR_SIZE_FIELD_NUMBER: _ClassVar[int]
    nar_hash: str
    nar_size: int
    def __init__(self, nar_hash: _Optional[str] = ..., nar_size: _Optional[int] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ["abandon_build_ids", "agent_id", "cache_public_key", "cache_url", "coordinator_version", "heartbeat_interval_ms", "max_log_bytes", "max_output_bytes", "substituters"]
    ABANDON_BUILD_IDS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CACHE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CACHE_URL_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_LOG_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SUBSTITUTERS_FIELD_NUMBER: _ClassVar[int]
    abandon_build_ids: _containers.RepeatedScalarFieldContainer[str]
    agent_id: str
    cache_public_key: str
    cache_url: str
    coordinator_version: str
    heartbeat_interval_ms: int
    max_log_bytes: int
    max_output_bytes: int
    substituters: _containers.RepeatedCompositeFieldContainer[Substituter]
    def __init__(self, agent_id: _Optional[str] = ..., coordinator_version: _Optional[str] = ..., abandon_build_ids: _Optional[_Iterable[str]] = ..., heartbeat_interval_ms: _Optional[int] = ..., cache_url: _Optional[str] = ..., cache_public_key: _Optional[str] = ..., substituters: _Optional[_Iterable[_Union[Substituter, _Mapping]]] = ..., max_output_bytes: _Optional[int] = ..., max_log_bytes: _Optional[int] = ...) -> None: ...

class SetupFailureReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class BuildResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ReportKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
