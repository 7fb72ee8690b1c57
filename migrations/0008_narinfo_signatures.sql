ALTER TABLE "pending_outputs" ADD COLUMN "nix_signature" text;--> statement-breakpoint
ALTER TABLE "pending_outputs" ADD COLUMN "guix_signature" text;--> statement-breakpoint
ALTER TABLE "pending_outputs" ADD COLUMN "signature_key" text;--> statement-breakpoint
ALTER TABLE "store_paths" ADD COLUMN "nix_signature" text;--> statement-breakpoint
ALTER TABLE "store_paths" ADD COLUMN "guix_signature" text;--> statement-breakpoint
ALTER TABLE "store_paths" ADD COLUMN "signature_key" text;--> statement-breakpoint
CREATE INDEX "store_paths_signature_key" ON "store_paths" USING btree ("signature_key");