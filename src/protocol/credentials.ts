// The credential headers an agent sends on every call (the admin token travels as
// "authorization: Bearer <token>"), shared by the agent, the CLI and the coordinator.
export const AGENT_ID_HEADER = 'x-kiln-agent-id';
export const AGENT_PASSWORD_HEADER = 'x-kiln-agent-password';
/** The registration token an agent registers itself with (AgentService.Register only). */
export const REGISTRATION_TOKEN_HEADER = 'x-kiln-registration-token';
/**
 * The file in the coordinator's data directory that holds the admin token it generated,
 * where clients on its machine (the CLI, the SDKs) read it when KILN_ADMIN_TOKEN is unset.
 */
export const ADMIN_TOKEN_FILE = 'admin-token';
