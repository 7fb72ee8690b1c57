CREATE TYPE "public"."delivery_state" AS ENUM('pending', 'running', 'done', 'parked');--> statement-breakpoint
CREATE TABLE "hook_deliveries" (
	"hook" text NOT NULL,
	"event_id" bigint NOT NULL,
	"state" "delivery_state" DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"run_after" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_until" timestamp with time zone,
	"last_error" text DEFAULT '' NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "hook_deliveries_hook_event_id_pk" PRIMARY KEY("hook","event_id")
);
--> statement-breakpoint
ALTER TABLE "hook_deliveries" ADD CONSTRAINT "hook_deliveries_event_id_events_id_fk" FOREIGN KEY ("event_id") REFERENCES "public"."events"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "hook_deliveries_open" ON "hook_deliveries" USING btree ("hook","run_after","event_id") WHERE "hook_deliveries"."state" in ('pending', 'running');--> statement-breakpoint
CREATE INDEX "hook_deliveries_event" ON "hook_deliveries" USING btree ("event_id");--> statement-breakpoint
-- Events from before hooks existed are history, not work: no hook is handed them.
UPDATE "events" SET "processed_at" = now() WHERE "processed_at" IS NULL;
