CREATE TYPE "public"."build_state" AS ENUM('scheduled', 'allocated', 'started', 'succeeded', 'failed', 'canceled');--> statement-breakpoint
CREATE TABLE "agent_passwords" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"agent_id" uuid NOT NULL,
	"hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "agent_tags" (
	"agent_id" uuid NOT NULL,
	"key" text NOT NULL,
	"value" text NOT NULL,
	CONSTRAINT "agent_tags_agent_id_key_pk" PRIMARY KEY("agent_id","key")
);
--> statement-breakpoint
CREATE TABLE "agents" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text DEFAULT '' NOT NULL,
	"active" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "build_attempts" (
	"build_id" uuid NOT NULL,
	"attempt" integer NOT NULL,
	"agent_id" uuid NOT NULL,
	"allocated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"ended_at" timestamp with time zone,
	"outcome" text,
	"message" text DEFAULT '' NOT NULL,
	"log_size" bigint,
	CONSTRAINT "build_attempts_build_id_attempt_pk" PRIMARY KEY("build_id","attempt")
);
--> statement-breakpoint
CREATE TABLE "build_tags" (
	"build_id" uuid NOT NULL,
	"key" text NOT NULL,
	"value" text NOT NULL,
	CONSTRAINT "build_tags_build_id_key_pk" PRIMARY KEY("build_id","key")
);
--> statement-breakpoint
CREATE TABLE "builds" (
	"id" uuid PRIMARY KEY NOT NULL,
	"seq" bigserial NOT NULL,
	"derivation_path" text NOT NULL,
	"priority" integer DEFAULT 0 NOT NULL,
	"state" "build_state" DEFAULT 'scheduled' NOT NULL,
	"agent_id" uuid,
	"attempt" integer DEFAULT 0 NOT NULL,
	"lease_until" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"ended_at" timestamp with time zone,
	CONSTRAINT "builds_seq_unique" UNIQUE("seq")
);
--> statement-breakpoint
CREATE TABLE "derivation_inputs" (
	"derivation_path" text NOT NULL,
	"input_path" text NOT NULL,
	"output_name" text NOT NULL,
	CONSTRAINT "derivation_inputs_derivation_path_input_path_output_name_pk" PRIMARY KEY("derivation_path","input_path","output_name")
);
--> statement-breakpoint
CREATE TABLE "derivation_outputs" (
	"derivation_path" text NOT NULL,
	"name" text NOT NULL,
	"path" text NOT NULL,
	"hash_algo" text DEFAULT '' NOT NULL,
	"hash" text DEFAULT '' NOT NULL,
	CONSTRAINT "derivation_outputs_derivation_path_name_pk" PRIMARY KEY("derivation_path","name")
);
--> statement-breakpoint
CREATE TABLE "derivations" (
	"path" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"system" text NOT NULL,
	"text" text NOT NULL,
	"fixed_output" boolean DEFAULT false NOT NULL,
	"hash_modulo" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"build_id" uuid,
	"agent_id" uuid,
	"payload" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"processed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "store_paths" (
	"path" text PRIMARY KEY NOT NULL,
	"hash_part" text NOT NULL,
	"nar_hash" text NOT NULL,
	"nar_size" bigint NOT NULL,
	"references" text[] DEFAULT '{}'::text[] NOT NULL,
	"deriver" text DEFAULT '' NOT NULL,
	"file_name" text NOT NULL,
	"compression" text NOT NULL,
	"file_hash" text NOT NULL,
	"file_size" bigint NOT NULL,
	"build_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "store_paths_hash_part_unique" UNIQUE("hash_part")
);
--> statement-breakpoint
ALTER TABLE "agent_passwords" ADD CONSTRAINT "agent_passwords_agent_id_agents_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "agent_tags" ADD CONSTRAINT "agent_tags_agent_id_agents_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "build_attempts" ADD CONSTRAINT "build_attempts_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "build_attempts" ADD CONSTRAINT "build_attempts_agent_id_agents_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "build_tags" ADD CONSTRAINT "build_tags_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "builds" ADD CONSTRAINT "builds_derivation_path_derivations_path_fk" FOREIGN KEY ("derivation_path") REFERENCES "public"."derivations"("path") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "builds" ADD CONSTRAINT "builds_agent_id_agents_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "derivation_inputs" ADD CONSTRAINT "derivation_inputs_derivation_path_derivations_path_fk" FOREIGN KEY ("derivation_path") REFERENCES "public"."derivations"("path") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "derivation_inputs" ADD CONSTRAINT "derivation_inputs_input_path_derivations_path_fk" FOREIGN KEY ("input_path") REFERENCES "public"."derivations"("path") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "derivation_outputs" ADD CONSTRAINT "derivation_outputs_derivation_path_derivations_path_fk" FOREIGN KEY ("derivation_path") REFERENCES "public"."derivations"("path") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "agent_passwords_agent" ON "agent_passwords" USING btree ("agent_id");--> statement-breakpoint
CREATE INDEX "build_tags_key_value" ON "build_tags" USING btree ("key","value");--> statement-breakpoint
CREATE INDEX "builds_derivation" ON "builds" USING btree ("derivation_path");--> statement-breakpoint
CREATE INDEX "builds_unfinished" ON "builds" USING btree ("state") WHERE "builds"."state" in ('scheduled', 'allocated', 'started');--> statement-breakpoint
CREATE INDEX "derivation_inputs_input" ON "derivation_inputs" USING btree ("input_path");--> statement-breakpoint
CREATE INDEX "derivation_outputs_path" ON "derivation_outputs" USING btree ("path");--> statement-breakpoint
CREATE INDEX "events_unprocessed" ON "events" USING btree ("id") WHERE "events"."processed_at" is null;