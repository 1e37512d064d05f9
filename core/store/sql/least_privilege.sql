-- The database role tokens-bot needs, and nothing more. Run it once as the database owner, e.g.
--   psql "$OWNER_URL" -v role=tokens_bot -v password="$(openssl rand -hex 24)" -f least_privilege.sql
-- then give the bot DATABASE_URL=postgresql://tokens_bot:<password>@host:5432/<db>.
-- On Supabase, run it in the SQL editor (as postgres) with the two \set lines uncommented; the grant on
-- auth.users needs a role that may grant on the auth schema.
-- \set role tokens_bot
-- \set password 'change-me'

CREATE ROLE :"role" LOGIN PASSWORD :'password';

-- Read the ledger and write admin_grant / admin_deduct rows into it; never update or delete ledger rows.
GRANT USAGE ON SCHEMA public TO :"role";
GRANT SELECT, INSERT ON public.token_usage TO :"role";

-- Read profiles; change only the three balance columns (row locks for approvals need UPDATE on a column).
GRANT SELECT ON public.user_profiles TO :"role";
GRANT UPDATE (vibe_assistant_tokens_remaining, vibe_assistant_tokens_used, vibe_assistant_total_cost)
    ON public.user_profiles TO :"role";

-- Look users up by email (TOKENS_EMAIL_SOURCE, default auth.users.email).
GRANT USAGE ON SCHEMA auth TO :"role";
GRANT SELECT (id, email) ON auth.users TO :"role";

-- The bot's own tables live in a schema it owns (TOKENS_SCHEMA, default tokens_bot); it migrates them itself:
-- requests and their audit log, digests, alert state and fleet scans (alerts, fleet_scans). Owning them, it
-- needs no grant on any of them, and no other role gets one. The tick's advisory locks need no grant either.
CREATE SCHEMA IF NOT EXISTS tokens_bot AUTHORIZATION :"role";
