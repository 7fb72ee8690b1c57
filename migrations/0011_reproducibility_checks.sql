CREATE TYPE "public"."reproducibility_state" AS ENUM('pending', 'reproducible', 'unreproducible', 'failed');--> statement-breakpoint
CREATE TABLE "check_outputs" (
	"build_id" uuid NOT NULL,
	"position" integer NOT NULL,
	"check_build_id" uuid NOT NULL,
	"agent_id" uuid,
	"tag_value" text DEFAULT '' NOT NULL,
	"name" text NOT NULL,
	"path" text NOT NULL,
	"nar_hash" text NOT NULL,
	"nar_size" bigint NOT NULL,
	"file_name" text NOT NULL,
	"compression" text NOT NULL,
	"file_size" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "check_outputs_build_id_position_name_pk" PRIMARY KEY("build_id","position","name")
);
--> statement-breakpoint
CREATE TABLE "reproducibility_checks" (
	"build_id" uuid PRIMARY KEY NOT NULL,
	"wanted" integer NOT NULL,
	"by_tag" text DEFAULT '' NOT NULL,
	"state" "reproducibility_state" DEFAULT 'pending' NOT NULL,
	"message" text DEFAULT '' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"decided_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "check_of" uuid;--> statement-breakpoint
ALTER TABLE "check_outputs" ADD CONSTRAINT "check_outputs_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "reproducibility_checks" ADD CONSTRAINT "reproducibility_checks_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "check_outputs_file_name" ON "check_outputs" USING btree ("file_name");--> statement-breakpoint
CREATE INDEX "check_outputs_path" ON "check_outputs" USING btree ("path");--> statement-breakpoint
CREATE INDEX "builds_check_of" ON "builds" USING btree ("check_of") WHERE "builds"."check_of" is not null;