ALTER TABLE "builds" ADD COLUMN "required_features" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "derivations" ADD COLUMN "required_features" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
-- Derivations stored before this migration: their requiredSystemFeatures from the .drv text
-- (an ATerm string: white space may be written as \n, \t or \r), as submission reads it.
UPDATE "derivations" SET "required_features" = array(
  select distinct f from regexp_split_to_table(substring("text" from '\("requiredSystemFeatures","([^"]*)"\)'), '(\s|\\[nrt])+') f
  where f <> '' order by f)::text[]
WHERE "text" like '%("requiredSystemFeatures",%';--> statement-breakpoint
UPDATE "builds" b SET "required_features" = d."required_features"
FROM "derivations" d
WHERE d."path" = b."derivation_path" and d."required_features" <> '{}'::text[] and b."state" in ('scheduled', 'allocated', 'started');
