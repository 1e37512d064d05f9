-- The product's tables as the reconciliation guide describes them, for demo and benchmark databases:
-- like a real product's, every non-key column may be NULL.
-- tokens-bot never runs this against a product database that already has them.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE IF NOT EXISTS auth.users (
    id uuid PRIMARY KEY,
    email text UNIQUE NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.user_profiles (
    user_id uuid PRIMARY KEY,
    membership_tier text,
    vibe_assistant_tokens_remaining bigint DEFAULT 0,
    vibe_assistant_tokens_used bigint DEFAULT 0,
    vibe_assistant_total_cost numeric(12, 2) DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.token_usage (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    action_type text NOT NULL,
    model_used text,
    tokens_used bigint DEFAULT 0,
    input_tokens bigint,
    output_tokens bigint,
    cost_estimate numeric(12, 4),
    success boolean DEFAULT true,
    error_message text,
    metadata jsonb DEFAULT '{}'::jsonb,
    created_at timestamptz DEFAULT now()
);

-- The indexes tokens-bot relies on (see README, "Indexes").
CREATE INDEX IF NOT EXISTS users_lower_email_idx ON auth.users (lower(email));
CREATE INDEX IF NOT EXISTS token_usage_user_created_idx ON public.token_usage (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS token_usage_created_brin ON public.token_usage USING brin (created_at);
CREATE INDEX IF NOT EXISTS user_profiles_remaining_idx ON public.user_profiles (vibe_assistant_tokens_remaining);
CREATE INDEX IF NOT EXISTS user_profiles_used_idx ON public.user_profiles (vibe_assistant_tokens_used DESC NULLS LAST);
