ALTER TABLE "builds" ADD COLUMN "failure_reason" text;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "failed_input" text;--> statement-breakpoint
ALTER TABLE "builds" ADD COLUMN "failed_input_build" uuid;--> statement-breakpoint
CREATE INDEX "builds_failed_input" ON "builds" USING btree ("failed_input") WHERE "builds"."failed_input" is not null;