CREATE TABLE "build_exclusions" (
	"build_id" uuid NOT NULL,
	"agent_id" uuid NOT NULL,
	"reason" text DEFAULT '' NOT NULL,
	CONSTRAINT "build_exclusions_build_id_agent_id_pk" PRIMARY KEY("build_id","agent_id")
);
--> statement-breakpoint
CREATE TABLE "build_waits" (
	"build_id" uuid NOT NULL,
	"path" text NOT NULL,
	CONSTRAINT "build_waits_build_id_path_pk" PRIMARY KEY("build_id","path")
);
--> statement-breakpoint
CREATE TABLE "derivation_sources" (
	"derivation_path" text NOT NULL,
	"path" text NOT NULL,
	CONSTRAINT "derivation_sources_derivation_path_path_pk" PRIMARY KEY("derivation_path","path")
);
--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "system" text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "derived_priority" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "waiting" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "not_before" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "timeout_seconds" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "max_silent_seconds" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "build_exclusions" ADD CONSTRAINT "build_exclusions_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "build_exclusions" ADD CONSTRAINT "build_exclusions_agent_id_agents_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "build_waits" ADD CONSTRAINT "build_waits_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "derivation_sources" ADD CONSTRAINT "derivation_sources_derivation_path_derivations_path_fk" FOREIGN KEY ("derivation_path") REFERENCES "public"."derivations"("path") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "build_waits_path" ON "build_waits" USING btree ("path");--> statement-breakpoint
CREATE INDEX "builds_ready" ON "builds" USING btree ("system","derived_priority" DESC NULLS LAST,"seq") WHERE "builds"."state" = 'scheduled' and "builds"."waiting" = 0;--> statement-breakpoint
CREATE INDEX "builds_agent" ON "builds" USING btree ("agent_id") WHERE "builds"."state" in ('allocated', 'started');--> statement-breakpoint
-- Existing builds: their system, their priority as derived priority, and what the scheduled ones wait for.
UPDATE "builds" SET "system" = d."system" FROM "derivations" d WHERE d."path" = "builds"."derivation_path";--> statement-breakpoint
UPDATE "builds" SET "derived_priority" = "priority";--> statement-breakpoint
INSERT INTO "build_waits" ("build_id", "path")
  SELECT b."id", o."path" FROM "builds" b
  JOIN "derivation_inputs" i ON i."derivation_path" = b."derivation_path"
  JOIN "derivation_outputs" o ON o."derivation_path" = i."input_path" AND o."name" = i."output_name"
  WHERE b."state" = 'scheduled' AND NOT EXISTS (SELECT 1 FROM "store_paths" s WHERE s."path" = o."path")
  ON CONFLICT DO NOTHING;--> statement-breakpoint
UPDATE "builds" SET "waiting" = (SELECT count(*) FROM "build_waits" w WHERE w."build_id" = "builds"."id") WHERE "state" = 'scheduled';
