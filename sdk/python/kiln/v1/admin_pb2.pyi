from kiln.v1 import agent_pb2 as _agent_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kiln.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

CHALLENGE_VERDICT_ERROR: ChallengeVerdict
CHALLENGE_VERDICT_MATCH: ChallengeVerdict
CHALLENGE_VERDICT_MISMATCH: ChallengeVerdict
CHALLENGE_VERDICT_MISSING: ChallengeVerdict
CHALLENGE_VERDICT_UNSPECIFIED: ChallengeVerdict
DESCRIPTOR: _descriptor.FileDescriptor
EXISTING_OUTPUTS_KILN: ExistingOutputs
EXISTING_OUTPUTS_UNSPECIFIED: ExistingOutputs
EXISTING_OUTPUTS_UPSTREAM: ExistingOutputs
FIXED_OUTPUT_CHECK_OUTCOME_CANCELED: FixedOutputCheckOutcome
FIXED_OUTPUT_CHECK_OUTCOME_FAILED: FixedOutputCheckOutcome
FIXED_OUTPUT_CHECK_OUTCOME_PASSED: FixedOutputCheckOutcome
FIXED_OUTPUT_CHECK_OUTCOME_PENDING: FixedOutputCheckOutcome
FIXED_OUTPUT_CHECK_OUTCOME_UNSPECIFIED: FixedOutputCheckOutcome
REPRODUCIBILITY_STATE_FAILED: ReproducibilityState
REPRODUCIBILITY_STATE_PENDING: ReproducibilityState
REPRODUCIBILITY_STATE_REPRODUCIBLE: ReproducibilityState
REPRODUCIBILITY_STATE_UNREPRODUCIBLE: ReproducibilityState
REPRODUCIBILITY_STATE_UNSPECIFIED: ReproducibilityState

class AgentSlotsInUse(_message.Message):
    __slots__ = ["agent_id", "agent_name", "in_use"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent_name: str
    in_use: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, agent_id: _Optional[str] = ..., agent_name: _Optional[str] = ..., in_use: _Optional[_Iterable[float]] = ...) -> None: ...

class CachePath(_message.Message):
    __slots__ = ["hash_part", "store_path", "version"]
    HASH_PART_FIELD_NUMBER: _ClassVar[int]
    STORE_PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    hash_part: str
    store_path: str
    version: str
    def __init__(self, hash_part: _Optional[str] = ..., store_path: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class CacheVerdict(_message.Message):
    __slots__ = ["cache", "nar_hash", "nar_size", "reason", "trusted", "verdict"]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    NAR_HASH_FIELD_NUMBER: _ClassVar[int]
    NAR_SIZE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    cache: str
    nar_hash: str
    nar_size: int
    reason: str
    trusted: bool
    verdict: ChallengeVerdict
    def __init__(self, cache: _Optional[str] = ..., verdict: _Optional[_Union[ChallengeVerdict, str]] = ..., nar_hash: _Optional[str] = ..., nar_size: _Optional[int] = ..., trusted: bool = ..., reason: _Optional[str] = ...) -> None: ...

class CancelBuildRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelBuildResponse(_message.Message):
    __slots__ = ["build"]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    build: _types_pb2.Build
    def __init__(self, build: _Optional[_Union[_types_pb2.Build, _Mapping]] = ...) -> None: ...

class ChallengeCachesRequest(_message.Message):
    __slots__ = ["caches", "limit", "tags"]
    CACHES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    caches: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    tags: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    def __init__(self, caches: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ..., limit: _Optional[int] = ...) -> None: ...

class ChallengeCachesResponse(_message.Message):
    __slots__ = ["paths", "summaries"]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedCompositeFieldContainer[ChallengedPath]
    summaries: _containers.RepeatedCompositeFieldContainer[ChallengeSummary]
    def __init__(self, paths: _Optional[_Iterable[_Union[ChallengedPath, _Mapping]]] = ..., summaries: _Optional[_Iterable[_Union[ChallengeSummary, _Mapping]]] = ...) -> None: ...

class ChallengeSummary(_message.Message):
    __slots__ = ["cache", "errors", "matches", "mismatches", "missing"]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    cache: str
    errors: int
    matches: int
    mismatches: int
    missing: int
    def __init__(self, cache: _Optional[str] = ..., matches: _Optional[int] = ..., mismatches: _Optional[int] = ..., missing: _Optional[int] = ..., errors: _Optional[int] = ...) -> None: ...

class ChallengedPath(_message.Message):
    __slots__ = ["build_id", "derivation_path", "nar_hash", "nar_size", "store_path", "verdicts"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    NAR_HASH_FIELD_NUMBER: _ClassVar[int]
    NAR_SIZE_FIELD_NUMBER: _ClassVar[int]
    STORE_PATH_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    derivation_path: str
    nar_hash: str
    nar_size: int
    store_path: str
    verdicts: _containers.RepeatedCompositeFieldContainer[CacheVerdict]
    def __init__(self, store_path: _Optional[str] = ..., derivation_path: _Optional[str] = ..., build_id: _Optional[str] = ..., nar_hash: _Optional[str] = ..., nar_size: _Optional[int] = ..., verdicts: _Optional[_Iterable[_Union[CacheVerdict, _Mapping]]] = ...) -> None: ...

class CheckBuildRequest(_message.Message):
    __slots__ = ["agents", "build_id", "by_tag"]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    BY_TAG_FIELD_NUMBER: _ClassVar[int]
    agents: int
    build_id: str
    by_tag: str
    def __init__(self, build_id: _Optional[str] = ..., agents: _Optional[int] = ..., by_tag: _Optional[str] = ...) -> None: ...

class CheckBuildResponse(_message.Message):
    __slots__ = ["build", "reproducibility"]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    REPRODUCIBILITY_FIELD_NUMBER: _ClassVar[int]
    build: _types_pb2.Build
    reproducibility: Reproducibility
    def __init__(self, build: _Optional[_Union[_types_pb2.Build, _Mapping]] = ..., reproducibility: _Optional[_Union[Reproducibility, _Mapping]] = ...) -> None: ...

class CheckFixedOutputsRequest(_message.Message):
    __slots__ = ["limit", "name", "older_than_seconds", "priority", "tags"]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OLDER_THAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    limit: int
    name: str
    older_than_seconds: int
    priority: int
    tags: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    def __init__(self, tags: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ..., name: _Optional[str] = ..., older_than_seconds: _Optional[int] = ..., priority: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class CheckFixedOutputsResponse(_message.Message):
    __slots__ = ["already_checking", "checks"]
    ALREADY_CHECKING_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    already_checking: _containers.RepeatedScalarFieldContainer[str]
    checks: _containers.RepeatedCompositeFieldContainer[FixedOutputCheck]
    def __init__(self, checks: _Optional[_Iterable[_Union[FixedOutputCheck, _Mapping]]] = ..., already_checking: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ["agent_id", "build_id", "nar_hash", "nar_size", "nar_url", "position", "tag_value"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    NAR_HASH_FIELD_NUMBER: _ClassVar[int]
    NAR_SIZE_FIELD_NUMBER: _ClassVar[int]
    NAR_URL_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TAG_VALUE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    build_id: str
    nar_hash: str
    nar_size: int
    nar_url: str
    position: int
    tag_value: str
    def __init__(self, position: _Optional[int] = ..., build_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., tag_value: _Optional[str] = ..., nar_hash: _Optional[str] = ..., nar_size: _Optional[int] = ..., nar_url: _Optional[str] = ...) -> None: ...

class CheckedOutput(_message.Message):
    __slots__ = ["differences", "differences_error", "name", "path", "reproducible", "results"]
    DIFFERENCES_ERROR_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    REPRODUCIBLE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    differences: _containers.RepeatedCompositeFieldContainer[DifferingFile]
    differences_error: str
    name: str
    path: str
    reproducible: bool
    results: _containers.RepeatedCompositeFieldContainer[CheckResult]
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., reproducible: bool = ..., results: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ..., differences: _Optional[_Iterable[_Union[DifferingFile, _Mapping]]] = ..., differences_error: _Optional[str] = ...) -> None: ...

class CollectGarbageRequest(_message.Message):
    __slots__ = ["dry_run"]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: bool = ...) -> None: ...

class CollectGarbageResponse(_message.Message):
    __slots__ = ["bytes", "files", "orphan_files", "paths"]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    ORPHAN_FILES_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    files: int
    orphan_files: int
    paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, paths: _Optional[_Iterable[str]] = ..., files: _Optional[int] = ..., orphan_files: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class CreateAgentPasswordRequest(_message.Message):
    __slots__ = ["agent_id"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class CreateAgentPasswordResponse(_message.Message):
    __slots__ = ["password"]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    password: str
    def __init__(self, password: _Optional[str] = ...) -> None: ...

class CreateAgentRequest(_message.Message):
    __slots__ = ["name", "tags"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tags: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    def __init__(self, name: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ...) -> None: ...

class CreateAgentResponse(_message.Message):
    __slots__ = ["agent"]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _types_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_types_pb2.Agent, _Mapping]] = ...) -> None: ...

class CreateRegistrationTokenRequest(_message.Message):
    __slots__ = ["expires_at", "tags"]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    tags: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    def __init__(self, tags: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRegistrationTokenResponse(_message.Message):
    __slots__ = ["secret", "token"]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    secret: str
    token: RegistrationToken
    def __init__(self, token: _Optional[_Union[RegistrationToken, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class DifferingFile(_message.Message):
    __slots__ = ["path", "versions"]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    path: str
    versions: _containers.RepeatedCompositeFieldContainer[FileVersion]
    def __init__(self, path: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[FileVersion, _Mapping]]] = ...) -> None: ...

class DrainAgentRequest(_message.Message):
    __slots__ = ["agent_id"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class DrainAgentResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class FileVersion(_message.Message):
    __slots__ = ["excerpt", "first_difference", "position", "sha256", "size", "type"]
    EXCERPT_FIELD_NUMBER: _ClassVar[int]
    FIRST_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    excerpt: str
    first_difference: int
    position: int
    sha256: str
    size: int
    type: str
    def __init__(self, position: _Optional[int] = ..., type: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., first_difference: _Optional[int] = ..., excerpt: _Optional[str] = ...) -> None: ...

class FinishedInMinute(_message.Message):
    __slots__ = ["canceled", "failed", "minute", "succeeded"]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    canceled: int
    failed: int
    minute: _timestamp_pb2.Timestamp
    succeeded: int
    def __init__(self, minute: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., canceled: _Optional[int] = ...) -> None: ...

class FixedOutputCheck(_message.Message):
    __slots__ = ["build_id", "derivation_path", "finished_at", "message", "outcome", "requested_at"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    derivation_path: str
    finished_at: _timestamp_pb2.Timestamp
    message: str
    outcome: FixedOutputCheckOutcome
    requested_at: _timestamp_pb2.Timestamp
    def __init__(self, build_id: _Optional[str] = ..., derivation_path: _Optional[str] = ..., requested_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[FixedOutputCheckOutcome, str]] = ..., message: _Optional[str] = ...) -> None: ...

class GetBuildLogRequest(_message.Message):
    __slots__ = ["attempt", "id"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    id: str
    def __init__(self, id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class GetBuildLogResponse(_message.Message):
    __slots__ = ["attempt", "chunk"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    chunk: bytes
    def __init__(self, attempt: _Optional[int] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class GetBuildRelationsRequest(_message.Message):
    __slots__ = ["dependants_limit", "id"]
    DEPENDANTS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    dependants_limit: int
    id: str
    def __init__(self, id: _Optional[str] = ..., dependants_limit: _Optional[int] = ...) -> None: ...

class GetBuildRelationsResponse(_message.Message):
    __slots__ = ["dependant_count", "dependants", "inputs"]
    DEPENDANTS_FIELD_NUMBER: _ClassVar[int]
    DEPENDANT_COUNT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    dependant_count: int
    dependants: _containers.RepeatedCompositeFieldContainer[RelatedBuild]
    inputs: _containers.RepeatedCompositeFieldContainer[RelatedBuild]
    def __init__(self, inputs: _Optional[_Iterable[_Union[RelatedBuild, _Mapping]]] = ..., dependants: _Optional[_Iterable[_Union[RelatedBuild, _Mapping]]] = ..., dependant_count: _Optional[int] = ...) -> None: ...

class GetBuildRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetBuildResponse(_message.Message):
    __slots__ = ["build", "reproducibility"]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    REPRODUCIBILITY_FIELD_NUMBER: _ClassVar[int]
    build: _types_pb2.Build
    reproducibility: Reproducibility
    def __init__(self, build: _Optional[_Union[_types_pb2.Build, _Mapping]] = ..., reproducibility: _Optional[_Union[Reproducibility, _Mapping]] = ...) -> None: ...

class GetFarmHistoryRequest(_message.Message):
    __slots__ = ["minutes"]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    minutes: int
    def __init__(self, minutes: _Optional[int] = ...) -> None: ...

class GetFarmHistoryResponse(_message.Message):
    __slots__ = ["agent_slots", "finished", "queue_depth", "step_seconds"]
    AGENT_SLOTS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    STEP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    agent_slots: _containers.RepeatedCompositeFieldContainer[AgentSlotsInUse]
    finished: _containers.RepeatedCompositeFieldContainer[FinishedInMinute]
    queue_depth: _containers.RepeatedCompositeFieldContainer[QueueDepthPoint]
    step_seconds: int
    def __init__(self, queue_depth: _Optional[_Iterable[_Union[QueueDepthPoint, _Mapping]]] = ..., step_seconds: _Optional[int] = ..., finished: _Optional[_Iterable[_Union[FinishedInMinute, _Mapping]]] = ..., agent_slots: _Optional[_Iterable[_Union[AgentSlotsInUse, _Mapping]]] = ...) -> None: ...

class GetQueueSummaryRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetQueueSummaryResponse(_message.Message):
    __slots__ = ["connected_agents", "counts", "ready"]
    CONNECTED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    connected_agents: int
    counts: _containers.RepeatedCompositeFieldContainer[QueueCount]
    ready: _containers.RepeatedCompositeFieldContainer[ReadyQueue]
    def __init__(self, counts: _Optional[_Iterable[_Union[QueueCount, _Mapping]]] = ..., ready: _Optional[_Iterable[_Union[ReadyQueue, _Mapping]]] = ..., connected_agents: _Optional[int] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ["agents"]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[_types_pb2.Agent]
    def __init__(self, agents: _Optional[_Iterable[_Union[_types_pb2.Agent, _Mapping]]] = ...) -> None: ...

class ListBuildsRequest(_message.Message):
    __slots__ = ["derivation_path", "name_contains", "newest_first", "page_size", "page_token", "states", "system", "tags", "without_inputs"]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_INPUTS_FIELD_NUMBER: _ClassVar[int]
    derivation_path: str
    name_contains: str
    newest_first: bool
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[_types_pb2.BuildState]
    system: str
    tags: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    without_inputs: bool
    def __init__(self, states: _Optional[_Iterable[_Union[_types_pb2.BuildState, str]]] = ..., tags: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ..., derivation_path: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., newest_first: bool = ..., system: _Optional[str] = ..., name_contains: _Optional[str] = ..., without_inputs: bool = ...) -> None: ...

class ListBuildsResponse(_message.Message):
    __slots__ = ["builds", "next_page_token"]
    BUILDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    builds: _containers.RepeatedCompositeFieldContainer[_types_pb2.Build]
    next_page_token: str
    def __init__(self, builds: _Optional[_Iterable[_Union[_types_pb2.Build, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListCachePathsRequest(_message.Message):
    __slots__ = ["page_size", "page_token"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCachePathsResponse(_message.Message):
    __slots__ = ["next_page_token", "paths"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    paths: _containers.RepeatedCompositeFieldContainer[CachePath]
    def __init__(self, paths: _Optional[_Iterable[_Union[CachePath, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ["build_id", "delivery_states", "page_size", "page_token", "types"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    delivery_states: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, types: _Optional[_Iterable[str]] = ..., build_id: _Optional[str] = ..., delivery_states: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ["events", "next_page_token"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_types_pb2.Event]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[_types_pb2.Event, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListFixedOutputChecksRequest(_message.Message):
    __slots__ = ["derivation_paths", "latest_only", "outcomes", "page_size"]
    DERIVATION_PATHS_FIELD_NUMBER: _ClassVar[int]
    LATEST_ONLY_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    derivation_paths: _containers.RepeatedScalarFieldContainer[str]
    latest_only: bool
    outcomes: _containers.RepeatedScalarFieldContainer[FixedOutputCheckOutcome]
    page_size: int
    def __init__(self, derivation_paths: _Optional[_Iterable[str]] = ..., outcomes: _Optional[_Iterable[_Union[FixedOutputCheckOutcome, str]]] = ..., latest_only: bool = ..., page_size: _Optional[int] = ...) -> None: ...

class ListFixedOutputChecksResponse(_message.Message):
    __slots__ = ["checks"]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    checks: _containers.RepeatedCompositeFieldContainer[FixedOutputCheck]
    def __init__(self, checks: _Optional[_Iterable[_Union[FixedOutputCheck, _Mapping]]] = ...) -> None: ...

class ListRegistrationTokensRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListRegistrationTokensResponse(_message.Message):
    __slots__ = ["tokens"]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[RegistrationToken]
    def __init__(self, tokens: _Optional[_Iterable[_Union[RegistrationToken, _Mapping]]] = ...) -> None: ...

class QueryMissingPathsRequest(_message.Message):
    __slots__ = ["paths"]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, paths: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryMissingPathsResponse(_message.Message):
    __slots__ = ["missing"]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, missing: _Optional[_Iterable[str]] = ...) -> None: ...

class QueueCount(_message.Message):
    __slots__ = ["count", "state", "system"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    count: int
    state: _types_pb2.BuildState
    system: str
    def __init__(self, state: _Optional[_Union[_types_pb2.BuildState, str]] = ..., system: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class QueueDepthPoint(_message.Message):
    __slots__ = ["allocated", "at", "scheduled", "started"]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    allocated: int
    at: _timestamp_pb2.Timestamp
    scheduled: int
    started: int
    def __init__(self, at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled: _Optional[int] = ..., allocated: _Optional[int] = ..., started: _Optional[int] = ...) -> None: ...

class ReadyQueue(_message.Message):
    __slots__ = ["count", "matching_connected", "oldest_created_at", "system"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MATCHING_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    count: int
    matching_connected: int
    oldest_created_at: _timestamp_pb2.Timestamp
    system: str
    def __init__(self, system: _Optional[str] = ..., count: _Optional[int] = ..., oldest_created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., matching_connected: _Optional[int] = ...) -> None: ...

class RegistrationToken(_message.Message):
    __slots__ = ["created_at", "expires_at", "id", "registrations", "revoked_at", "tags"]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRATIONS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    id: str
    registrations: int
    revoked_at: _timestamp_pb2.Timestamp
    tags: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    def __init__(self, id: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., registrations: _Optional[int] = ...) -> None: ...

class RelatedBuild(_message.Message):
    __slots__ = ["build_id", "derivation_path", "state"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    derivation_path: str
    state: _types_pb2.BuildState
    def __init__(self, derivation_path: _Optional[str] = ..., build_id: _Optional[str] = ..., state: _Optional[_Union[_types_pb2.BuildState, str]] = ...) -> None: ...

class Reproducibility(_message.Message):
    __slots__ = ["agents", "by_tag", "check_build_ids", "decided_at", "message", "outputs", "state"]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    BY_TAG_FIELD_NUMBER: _ClassVar[int]
    CHECK_BUILD_IDS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    agents: int
    by_tag: str
    check_build_ids: _containers.RepeatedScalarFieldContainer[str]
    decided_at: _timestamp_pb2.Timestamp
    message: str
    outputs: _containers.RepeatedCompositeFieldContainer[CheckedOutput]
    state: ReproducibilityState
    def __init__(self, state: _Optional[_Union[ReproducibilityState, str]] = ..., agents: _Optional[int] = ..., by_tag: _Optional[str] = ..., message: _Optional[str] = ..., decided_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., outputs: _Optional[_Iterable[_Union[CheckedOutput, _Mapping]]] = ..., check_build_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RetryBuildRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RetryBuildResponse(_message.Message):
    __slots__ = ["build"]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    build: _types_pb2.Build
    def __init__(self, build: _Optional[_Union[_types_pb2.Build, _Mapping]] = ...) -> None: ...

class RetryEventRequest(_message.Message):
    __slots__ = ["hook", "id"]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    hook: str
    id: int
    def __init__(self, id: _Optional[int] = ..., hook: _Optional[str] = ...) -> None: ...

class RetryEventResponse(_message.Message):
    __slots__ = ["retried"]
    RETRIED_FIELD_NUMBER: _ClassVar[int]
    retried: int
    def __init__(self, retried: _Optional[int] = ...) -> None: ...

class RevokeRegistrationTokenRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeRegistrationTokenResponse(_message.Message):
    __slots__ = ["token"]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: RegistrationToken
    def __init__(self, token: _Optional[_Union[RegistrationToken, _Mapping]] = ...) -> None: ...

class SetAgentActiveRequest(_message.Message):
    __slots__ = ["active", "agent_id"]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    active: bool
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ..., active: bool = ...) -> None: ...

class SetAgentActiveResponse(_message.Message):
    __slots__ = ["agent"]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _types_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_types_pb2.Agent, _Mapping]] = ...) -> None: ...

class SetBuildPriorityRequest(_message.Message):
    __slots__ = ["id", "priority"]
    ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    priority: int
    def __init__(self, id: _Optional[str] = ..., priority: _Optional[int] = ...) -> None: ...

class SetBuildPriorityResponse(_message.Message):
    __slots__ = ["build"]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    build: _types_pb2.Build
    def __init__(self, build: _Optional[_Union[_types_pb2.Build, _Mapping]] = ...) -> None: ...

class SourceHeader(_message.Message):
    __slots__ = ["derivation_path", "references", "store_path", "via"]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    STORE_PATH_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    derivation_path: str
    references: _containers.RepeatedScalarFieldContainer[str]
    store_path: str
    via: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, store_path: _Optional[str] = ..., references: _Optional[_Iterable[str]] = ..., derivation_path: _Optional[str] = ..., via: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitBuildRequest(_message.Message):
    __slots__ = ["build_id", "check_reproducible", "check_reproducible_by", "derivation_path", "derivations", "existing_outputs", "ignore_if_output_exists", "max_silent_seconds", "priority", "tags", "timeout_seconds"]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    CHECK_REPRODUCIBLE_BY_FIELD_NUMBER: _ClassVar[int]
    CHECK_REPRODUCIBLE_FIELD_NUMBER: _ClassVar[int]
    DERIVATIONS_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    EXISTING_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_IF_OUTPUT_EXISTS_FIELD_NUMBER: _ClassVar[int]
    MAX_SILENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    check_reproducible: int
    check_reproducible_by: str
    derivation_path: str
    derivations: _containers.RepeatedCompositeFieldContainer[_types_pb2.DerivationText]
    existing_outputs: ExistingOutputs
    ignore_if_output_exists: bool
    max_silent_seconds: int
    priority: int
    tags: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    timeout_seconds: int
    def __init__(self, derivation_path: _Optional[str] = ..., derivations: _Optional[_Iterable[_Union[_types_pb2.DerivationText, _Mapping]]] = ..., build_id: _Optional[str] = ..., priority: _Optional[int] = ..., tags: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ..., ignore_if_output_exists: bool = ..., timeout_seconds: _Optional[int] = ..., max_silent_seconds: _Optional[int] = ..., existing_outputs: _Optional[_Union[ExistingOutputs, str]] = ..., check_reproducible: _Optional[int] = ..., check_reproducible_by: _Optional[str] = ...) -> None: ...

class SubmitBuildResponse(_message.Message):
    __slots__ = ["available_upstream", "build", "existing"]
    AVAILABLE_UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    available_upstream: bool
    build: _types_pb2.Build
    existing: bool
    def __init__(self, build: _Optional[_Union[_types_pb2.Build, _Mapping]] = ..., existing: bool = ..., available_upstream: bool = ...) -> None: ...

class SubmitBuildsRequest(_message.Message):
    __slots__ = ["builds"]
    BUILDS_FIELD_NUMBER: _ClassVar[int]
    builds: _containers.RepeatedCompositeFieldContainer[SubmitBuildRequest]
    def __init__(self, builds: _Optional[_Iterable[_Union[SubmitBuildRequest, _Mapping]]] = ...) -> None: ...

class SubmitBuildsResponse(_message.Message):
    __slots__ = ["builds"]
    BUILDS_FIELD_NUMBER: _ClassVar[int]
    builds: _containers.RepeatedCompositeFieldContainer[SubmitBuildResponse]
    def __init__(self, builds: _Optional[_Iterable[_Union[SubmitBuildResponse, _Mapping]]] = ...) -> None: ...

class UpdateBuildTagsRequest(_message.Message):
    __slots__ = ["id", "remove_keys", "set"]
    ID_FIELD_NUMBER: _ClassVar[int]
    REMOVE_KEYS_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    id: str
    remove_keys: _containers.RepeatedScalarFieldContainer[str]
    set: _containers.RepeatedCompositeFieldContainer[_types_pb2.Tag]
    def __init__(self, id: _Optional[str] = ..., set: _Optional[_Iterable[_Union[_types_pb2.Tag, _Mapping]]] = ..., remove_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateBuildTagsResponse(_message.Message):
    __slots__ = ["build"]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    build: _types_pb2.Build
    def __init__(self, build: _Optional[_Union[_types_pb2.Build, _Mapping]] = ...) -> None: ...

class UploadSourceRequest(_message.Message):
    __slots__ = ["chunk", "header", "trailer"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    header: SourceHeader
    trailer: _agent_pb2.UploadTrailer
    def __init__(self, header: _Optional[_Union[SourceHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., trailer: _Optional[_Union[_agent_pb2.UploadTrailer, _Mapping]] = ...) -> None: ...

class UploadSourceResponse(_message.Message):
    __slots__ = ["file_hash", "file_size"]
    FILE_HASH_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    file_hash: str
    file_size: int
    def __init__(self, file_hash: _Optional[str] = ..., file_size: _Optional[int] = ...) -> None: ...

class ExistingOutputs(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ChallengeVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class FixedOutputCheckOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ReproducibilityState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
