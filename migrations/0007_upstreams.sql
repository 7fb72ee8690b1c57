CREATE TABLE "upstream_lookups" (
	"upstream" text NOT NULL,
	"path" text NOT NULL,
	"outcome" text NOT NULL,
	"reason" text DEFAULT '' NOT NULL,
	"checked_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	CONSTRAINT "upstream_lookups_path_upstream_pk" PRIMARY KEY("path","upstream")
);
--> statement-breakpoint
CREATE TABLE "upstreams" (
	"url" text PRIMARY KEY NOT NULL,
	"position" integer NOT NULL,
	"for_outputs" boolean NOT NULL,
	"for_derivations" boolean NOT NULL
);
--> statement-breakpoint
ALTER TABLE "build_waits" ADD COLUMN "submit_on_miss" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "derivations" ADD COLUMN "allow_substitutes" boolean DEFAULT true NOT NULL;