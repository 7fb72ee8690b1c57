CREATE TABLE "agent_registration_tokens" (
	"id" uuid PRIMARY KEY NOT NULL,
	"hash" text NOT NULL,
	"tags" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"registrations" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "agent_registration_tokens_hash_unique" UNIQUE("hash")
);
