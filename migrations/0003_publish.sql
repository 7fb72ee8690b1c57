CREATE TABLE "nar_files" (
	"path" text NOT NULL,
	"compression" text NOT NULL,
	"file_name" text NOT NULL,
	"file_hash" text NOT NULL,
	"file_size" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "nar_files_path_compression_pk" PRIMARY KEY("path","compression")
);
--> statement-breakpoint
ALTER TABLE "store_paths" ADD COLUMN "narinfo" text;--> statement-breakpoint
ALTER TABLE "store_paths" ADD COLUMN "narinfo_signer" text;--> statement-breakpoint
ALTER TABLE "nar_files" ADD CONSTRAINT "nar_files_path_store_paths_path_fk" FOREIGN KEY ("path") REFERENCES "public"."store_paths"("path") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "nar_files_file_name" ON "nar_files" USING btree ("file_name");--> statement-breakpoint
CREATE INDEX "store_paths_file_name" ON "store_paths" USING btree ("file_name");