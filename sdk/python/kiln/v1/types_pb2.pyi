from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

BUILD_STATE_ALLOCATED: BuildState
BUILD_STATE_CANCELED: BuildState
BUILD_STATE_FAILED: BuildState
BUILD_STATE_SCHEDULED: BuildState
BUILD_STATE_STARTED: BuildState
BUILD_STATE_SUCCEEDED: BuildState
BUILD_STATE_UNSPECIFIED: BuildState
DESCRIPTOR: _descriptor.FileDescriptor
WAIT_KIND_AGENTS_UNAVAILABLE: WaitKind
WAIT_KIND_FREE_SLOT: WaitKind
WAIT_KIND_MISSING_INPUTS: WaitKind
WAIT_KIND_NO_MATCHING_AGENT: WaitKind
WAIT_KIND_RETRY_BACKOFF: WaitKind
WAIT_KIND_UNSPECIFIED: WaitKind

class Agent(_message.Message):
    __slots__ = ["active", "connection", "created_at", "id", "name", "password_count", "tags"]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    active: bool
    connection: AgentConnection
    created_at: _timestamp_pb2.Timestamp
    id: str
    name: str
    password_count: int
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., active: bool = ..., password_count: _Optional[int] = ..., connection: _Optional[_Union[AgentConnection, _Mapping]] = ...) -> None: ...

class AgentConnection(_message.Message):
    __slots__ = ["cpu_count", "draining", "free_disk_bytes", "free_slots", "holding", "last_seen", "load_average", "mandatory_features", "max_parallel_builds", "system_features", "systems"]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    FREE_DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    HOLDING_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    MANDATORY_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_BUILDS_FIELD_NUMBER: _ClassVar[int]
    SYSTEMS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FEATURES_FIELD_NUMBER: _ClassVar[int]
    cpu_count: int
    draining: bool
    free_disk_bytes: int
    free_slots: int
    holding: int
    last_seen: _timestamp_pb2.Timestamp
    load_average: float
    mandatory_features: _containers.RepeatedScalarFieldContainer[str]
    max_parallel_builds: int
    system_features: _containers.RepeatedScalarFieldContainer[str]
    systems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, systems: _Optional[_Iterable[str]] = ..., max_parallel_builds: _Optional[int] = ..., free_slots: _Optional[int] = ..., holding: _Optional[int] = ..., load_average: _Optional[float] = ..., cpu_count: _Optional[int] = ..., free_disk_bytes: _Optional[int] = ..., draining: bool = ..., last_seen: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., system_features: _Optional[_Iterable[str]] = ..., mandatory_features: _Optional[_Iterable[str]] = ...) -> None: ...

class Build(_message.Message):
    __slots__ = ["agent_id", "attempt_count", "attempts", "check_of_build_id", "created_at", "derivation_path", "derived_priority", "ended_at", "failed_input", "failed_input_build_id", "failure_reason", "id", "input_derivations", "max_silent_seconds", "not_before", "outputs", "priority", "required_features", "state", "success_reason", "system", "tags", "timeout_seconds", "updated_at", "wait_reason", "waiting_inputs"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHECK_OF_BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    DERIVED_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    FAILED_INPUT_BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    FAILED_INPUT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_DERIVATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SILENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_REASON_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    WAITING_INPUTS_FIELD_NUMBER: _ClassVar[int]
    WAIT_REASON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    attempt_count: int
    attempts: _containers.RepeatedCompositeFieldContainer[BuildAttempt]
    check_of_build_id: str
    created_at: _timestamp_pb2.Timestamp
    derivation_path: str
    derived_priority: int
    ended_at: _timestamp_pb2.Timestamp
    failed_input: str
    failed_input_build_id: str
    failure_reason: str
    id: str
    input_derivations: _containers.RepeatedScalarFieldContainer[str]
    max_silent_seconds: int
    not_before: _timestamp_pb2.Timestamp
    outputs: _containers.RepeatedCompositeFieldContainer[DerivationOutput]
    priority: int
    required_features: _containers.RepeatedScalarFieldContainer[str]
    state: BuildState
    success_reason: str
    system: str
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    timeout_seconds: int
    updated_at: _timestamp_pb2.Timestamp
    wait_reason: WaitReason
    waiting_inputs: int
    def __init__(self, id: _Optional[str] = ..., derivation_path: _Optional[str] = ..., system: _Optional[str] = ..., priority: _Optional[int] = ..., state: _Optional[_Union[BuildState, str]] = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[DerivationOutput, _Mapping]]] = ..., input_derivations: _Optional[_Iterable[str]] = ..., agent_id: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., derived_priority: _Optional[int] = ..., attempt_count: _Optional[int] = ..., attempts: _Optional[_Iterable[_Union[BuildAttempt, _Mapping]]] = ..., timeout_seconds: _Optional[int] = ..., max_silent_seconds: _Optional[int] = ..., not_before: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., waiting_inputs: _Optional[int] = ..., required_features: _Optional[_Iterable[str]] = ..., wait_reason: _Optional[_Union[WaitReason, _Mapping]] = ..., failure_reason: _Optional[str] = ..., failed_input: _Optional[str] = ..., failed_input_build_id: _Optional[str] = ..., check_of_build_id: _Optional[str] = ..., success_reason: _Optional[str] = ...) -> None: ...

class BuildAttempt(_message.Message):
    __slots__ = ["agent_id", "allocated_at", "attempt", "ended_at", "log_size", "message", "outcome", "started_at", "trace_id"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    allocated_at: _timestamp_pb2.Timestamp
    attempt: int
    ended_at: _timestamp_pb2.Timestamp
    log_size: int
    message: str
    outcome: str
    started_at: _timestamp_pb2.Timestamp
    trace_id: str
    def __init__(self, attempt: _Optional[int] = ..., agent_id: _Optional[str] = ..., allocated_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[str] = ..., message: _Optional[str] = ..., log_size: _Optional[int] = ..., trace_id: _Optional[str] = ...) -> None: ...

class DerivationOutput(_message.Message):
    __slots__ = ["hash", "hash_algo", "name", "path"]
    HASH_ALGO_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    hash: str
    hash_algo: str
    name: str
    path: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., hash_algo: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class DerivationText(_message.Message):
    __slots__ = ["path", "text"]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    path: str
    text: bytes
    def __init__(self, path: _Optional[str] = ..., text: _Optional[bytes] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ["agent_id", "build_id", "created_at", "deliveries", "id", "payload_json", "type"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    build_id: str
    created_at: _timestamp_pb2.Timestamp
    deliveries: _containers.RepeatedCompositeFieldContainer[EventDelivery]
    id: int
    payload_json: str
    type: str
    def __init__(self, id: _Optional[int] = ..., type: _Optional[str] = ..., build_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., payload_json: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., deliveries: _Optional[_Iterable[_Union[EventDelivery, _Mapping]]] = ...) -> None: ...

class EventDelivery(_message.Message):
    __slots__ = ["attempts", "hook", "last_error", "run_after", "state"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    RUN_AFTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    hook: str
    last_error: str
    run_after: _timestamp_pb2.Timestamp
    state: str
    def __init__(self, hook: _Optional[str] = ..., state: _Optional[str] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., run_after: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MissingInput(_message.Message):
    __slots__ = ["build_id", "path", "upstream_asked"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ASKED_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    path: str
    upstream_asked: bool
    def __init__(self, path: _Optional[str] = ..., build_id: _Optional[str] = ..., upstream_asked: bool = ...) -> None: ...

class Tag(_message.Message):
    __slots__ = ["key", "value"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class WaitReason(_message.Message):
    __slots__ = ["agents_seen_by", "kind", "matching_agents", "missing_input_count", "missing_inputs", "not_before", "text", "unmatched_features", "unmatched_system", "unmatched_tags"]
    AGENTS_SEEN_BY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MATCHING_AGENTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_INPUTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_INPUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_TAGS_FIELD_NUMBER: _ClassVar[int]
    agents_seen_by: str
    kind: WaitKind
    matching_agents: int
    missing_input_count: int
    missing_inputs: _containers.RepeatedCompositeFieldContainer[MissingInput]
    not_before: _timestamp_pb2.Timestamp
    text: str
    unmatched_features: _containers.RepeatedScalarFieldContainer[str]
    unmatched_system: str
    unmatched_tags: _containers.RepeatedCompositeFieldContainer[Tag]
    def __init__(self, kind: _Optional[_Union[WaitKind, str]] = ..., text: _Optional[str] = ..., missing_inputs: _Optional[_Iterable[_Union[MissingInput, _Mapping]]] = ..., missing_input_count: _Optional[int] = ..., not_before: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., unmatched_system: _Optional[str] = ..., unmatched_tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., unmatched_features: _Optional[_Iterable[str]] = ..., agents_seen_by: _Optional[str] = ..., matching_agents: _Optional[int] = ...) -> None: ...

class BuildState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class WaitKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
