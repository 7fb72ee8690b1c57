CREATE TABLE "pending_outputs" (
	"build_id" uuid NOT NULL,
	"attempt" integer NOT NULL,
	"name" text NOT NULL,
	"path" text NOT NULL,
	"hash_part" text NOT NULL,
	"nar_hash" text NOT NULL,
	"nar_size" bigint NOT NULL,
	"references" text[] DEFAULT '{}'::text[] NOT NULL,
	"deriver" text DEFAULT '' NOT NULL,
	"file_name" text NOT NULL,
	"compression" text NOT NULL,
	"file_hash" text NOT NULL,
	"file_size" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pending_outputs_build_id_attempt_name_pk" PRIMARY KEY("build_id","attempt","name")
);
--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "failure_reason" text;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "failed_input" text;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "failed_input_build" uuid;--> statement-breakpoint
ALTER TABLE "pending_outputs" ADD CONSTRAINT "pending_outputs_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "pending_outputs_file_name" ON "pending_outputs" USING btree ("file_name");--> statement-breakpoint
CREATE INDEX "builds_failed_input" ON "builds" USING btree ("failed_input") WHERE "builds"."failed_input" is not null;