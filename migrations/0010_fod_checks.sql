CREATE TABLE "fod_checks" (
	"build_id" uuid PRIMARY KEY NOT NULL,
	"derivation_path" text NOT NULL,
	"requested_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"outcome" text,
	"message" text DEFAULT '' NOT NULL
);
--> statement-breakpoint
ALTER TABLE "fod_checks" ADD CONSTRAINT "fod_checks_build_id_builds_id_fk" FOREIGN KEY ("build_id") REFERENCES "public"."builds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "fod_checks" ADD CONSTRAINT "fod_checks_derivation_path_derivations_path_fk" FOREIGN KEY ("derivation_path") REFERENCES "public"."derivations"("path") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "fod_checks_derivation" ON "fod_checks" USING btree ("derivation_path","requested_at");--> statement-breakpoint
CREATE INDEX "fod_checks_open" ON "fod_checks" USING btree ("requested_at") WHERE "fod_checks"."outcome" is null;