// The credential headers an agent sends on every call (the admin token travels as
// "authorization: Bearer <token>"), shared by the agent, the CLI and the coordinator.
export const AGENT_ID_HEADER = 'x-kiln-agent-id';
export const AGENT_PASSWORD_HEADER = 'x-kiln-agent-password';
/** The registration token an agent registers itself with (AgentService.Register only). */
export const REGISTRATION_TOKEN_HEADER = 'x-kiln-registration-token';
