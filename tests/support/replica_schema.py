"""VibrationFit's token tables as production had them on 2025-11-11, in DDL of our own.

Written from the research notes on the product (/tmp/vibrationfit_facts.md §1a, §2a, §3a: the production
schema dump of that day), not copied from the product or from core/sql. Only what the bot reads or
what constrains its writes is reproduced, with the product's names: `auth.users` and `auth.uid()` (so
the row-level-security policies compile), `membership_tiers` with its enum, versioned `user_profiles`
(several rows per user, at most one active non-draft and one draft) and `token_usage` with its
20-value CHECK list, indexes and policies. Tests connect as the owner, as Supabase's service_role
would: row-level security is enabled but does not hide rows from the bot.
"""

from __future__ import annotations

import uuid

# The 20 action types production's CHECK allowed on 2025-11-11 (facts §1b "prod 11-11").
ACTION_TYPES = (
    "assessment_scoring",
    "vision_generation",
    "vision_refinement",
    "blueprint_generation",
    "chat_conversation",
    "audio_generation",
    "image_generation",
    "transcription",
    "admin_grant",
    "admin_deduct",
    "subscription_grant",
    "trial_grant",
    "token_pack_purchase",
    "life_vision_category_summary",
    "life_vision_master_assembly",
    "prompt_suggestions",
    "frequency_flip",
    "vibrational_analysis",
    "viva_scene_generation",
    "north_star_reflection",
)
GRANT_TYPES = ("admin_grant", "trial_grant", "token_pack_purchase")
DEDUCT_TYPES = ("admin_deduct",)
RESET_TYPES = ("subscription_grant",)
USAGE_TYPES = tuple(a for a in ACTION_TYPES if a not in GRANT_TYPES + DEDUCT_TYPES + RESET_TYPES)

TIER_TYPES = ("free", "starter", "pro", "elite", "vision_pro_annual", "vision_pro_28day")


def tier_id(tier_type: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vibrationfit-replica/tier/{tier_type}"))


# (name, tier_type, annual_token_grant, monthly_token_grant, billing_interval): the grants as the
# 2025-11-16 reseed states them (facts §3b.6); the free tier grants nothing.
TIERS = (
    ("Free", "free", 0, 0, "month"),
    ("Vision Pro Annual", "vision_pro_annual", 5_000_000, 0, "year"),
    ("Vision Pro 28-Day", "vision_pro_28day", 0, 375_000, "month"),
)
TIER_AMOUNTS = {tier_type: annual or monthly for _, tier_type, annual, monthly, _ in TIERS}


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


DDL = [
    "CREATE SCHEMA auth",
    "CREATE TABLE auth.users (id uuid PRIMARY KEY, email text)",
    # Supabase's helpers: nobody is signed in when the bot (or the owner) reads.
    "CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT NULL::uuid $$",
    "CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$ SELECT NULL::text $$",
    f"CREATE TYPE public.membership_tier_type AS ENUM ({_quoted(TIER_TYPES)})",
    """CREATE TABLE public.membership_tiers (
        id uuid DEFAULT gen_random_uuid() NOT NULL PRIMARY KEY,
        name character varying(100) NOT NULL UNIQUE,
        description text,
        monthly_vibe_assistant_tokens integer DEFAULT 0 NOT NULL,
        monthly_vibe_assistant_cost_limit numeric(10,4) DEFAULT 0.00,
        price_per_month numeric(10,2) DEFAULT 0.00,
        is_active boolean DEFAULT true,
        created_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
        updated_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
        tier_type public.membership_tier_type,
        price_monthly integer DEFAULT 0 NOT NULL,
        price_yearly integer,
        features jsonb DEFAULT '[]'::jsonb,
        viva_tokens_monthly integer DEFAULT 0 NOT NULL,
        max_visions integer,
        is_popular boolean DEFAULT false,
        display_order integer DEFAULT 0,
        stripe_product_id text UNIQUE,
        stripe_price_id text UNIQUE,
        annual_token_grant integer DEFAULT 0,
        monthly_token_grant integer DEFAULT 0,
        billing_interval text DEFAULT 'month'::text)""",
    "ALTER TABLE public.membership_tiers ENABLE ROW LEVEL SECURITY",
    'CREATE POLICY "Anyone can view active membership tiers" ON public.membership_tiers'
    " FOR SELECT USING (is_active = true)",
    'CREATE POLICY "Membership tiers are viewable by everyone" ON public.membership_tiers'
    " FOR SELECT USING (true)",
    'CREATE POLICY "Only service role can modify membership tiers" ON public.membership_tiers'
    " USING (auth.role() = 'service_role')",
    # Versioned profiles: user_id is NOT unique (the UNIQUE was dropped on 2025-11-03). The remaining
    # balance still defaults to 100, the untracked default of the era.
    """CREATE TABLE public.user_profiles (
        id uuid DEFAULT gen_random_uuid() NOT NULL PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
        created_at timestamp with time zone DEFAULT now(),
        updated_at timestamp with time zone DEFAULT now(),
        vibe_assistant_tokens_used integer DEFAULT 0,
        vibe_assistant_tokens_remaining integer DEFAULT 100,
        vibe_assistant_monthly_reset_date timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
        vibe_assistant_total_cost numeric(10,4) DEFAULT 0.00,
        membership_tier_id uuid REFERENCES public.membership_tiers(id),
        vibe_assistant_allowance_reset_count integer DEFAULT 0,
        token_rollover_cycles integer DEFAULT 0,
        token_last_drip_date timestamp without time zone,
        auto_topup_enabled boolean DEFAULT false,
        auto_topup_pack_id text,
        storage_quota_gb integer DEFAULT 100,
        version_number integer DEFAULT 1,
        is_draft boolean DEFAULT false,
        is_active boolean DEFAULT false,
        parent_version_id uuid REFERENCES public.user_profiles(id))""",
    "CREATE UNIQUE INDEX idx_user_profiles_one_active_per_user ON public.user_profiles (user_id)"
    " WHERE is_active = true AND is_draft = false",
    "CREATE UNIQUE INDEX idx_user_profiles_one_draft_per_user ON public.user_profiles (user_id)"
    " WHERE is_draft = true",
    "CREATE INDEX idx_user_profiles_user_id ON public.user_profiles (user_id)",
    "CREATE INDEX idx_user_profiles_user_active ON public.user_profiles (user_id, is_active)",
    "CREATE INDEX idx_user_profiles_user_draft ON public.user_profiles (user_id, is_draft)",
    "CREATE INDEX idx_user_profiles_user_version ON public.user_profiles (user_id, version_number DESC)",
    "CREATE INDEX idx_user_profiles_membership_tier ON public.user_profiles (membership_tier_id)",
    "CREATE INDEX idx_user_profiles_tokens_used ON public.user_profiles (vibe_assistant_tokens_used)",
    "CREATE INDEX idx_user_profiles_reset_date ON public.user_profiles (vibe_assistant_monthly_reset_date)",
    "ALTER TABLE public.user_profiles ENABLE ROW LEVEL SECURITY",
    'CREATE POLICY "Users can view own profile" ON public.user_profiles FOR SELECT USING (auth.uid() = user_id)',
    'CREATE POLICY "Users can insert own profile" ON public.user_profiles'
    " FOR INSERT WITH CHECK (auth.uid() = user_id)",
    'CREATE POLICY "Users can update own profile" ON public.user_profiles FOR UPDATE USING (auth.uid() = user_id)',
    'CREATE POLICY "Users can delete own profile" ON public.user_profiles FOR DELETE USING (auth.uid() = user_id)',
    """CREATE FUNCTION public.update_user_profiles_updated_at() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN NEW.updated_at = now(); RETURN NEW; END $$""",
    "CREATE TRIGGER trigger_update_user_profiles_updated_at BEFORE UPDATE ON public.user_profiles"
    " FOR EACH ROW EXECUTE FUNCTION public.update_user_profiles_updated_at()",
    f"""CREATE TABLE public.token_usage (
        id uuid DEFAULT gen_random_uuid() NOT NULL,
        user_id uuid NOT NULL,
        action_type text NOT NULL,
        model_used text NOT NULL,
        tokens_used integer DEFAULT 0 NOT NULL,
        input_tokens integer DEFAULT 0,
        output_tokens integer DEFAULT 0,
        cost_estimate numeric(10,4) DEFAULT 0,
        success boolean DEFAULT true NOT NULL,
        error_message text,
        metadata jsonb DEFAULT '{{}}'::jsonb,
        created_at timestamp with time zone DEFAULT now() NOT NULL,
        CONSTRAINT token_usage_action_type_check CHECK (action_type = ANY (ARRAY[{_quoted(ACTION_TYPES)}])))""",
    "ALTER TABLE ONLY public.token_usage ADD CONSTRAINT token_usage_pkey PRIMARY KEY (id)",
    "ALTER TABLE ONLY public.token_usage ADD CONSTRAINT token_usage_user_id_fkey FOREIGN KEY (user_id)"
    " REFERENCES auth.users(id) ON DELETE CASCADE",
    "CREATE INDEX idx_token_usage_action_type ON public.token_usage (action_type)",
    "CREATE INDEX idx_token_usage_created_at ON public.token_usage (created_at DESC)",
    "CREATE INDEX idx_token_usage_model_used ON public.token_usage (model_used)",
    "CREATE INDEX idx_token_usage_user_created ON public.token_usage (user_id, created_at DESC)",
    "CREATE INDEX idx_token_usage_user_id ON public.token_usage (user_id)",
    'CREATE POLICY "System can insert token usage" ON public.token_usage FOR INSERT WITH CHECK (true)',
    'CREATE POLICY "Users can view their own token usage" ON public.token_usage'
    " FOR SELECT USING (auth.uid() = user_id)",
    "ALTER TABLE public.token_usage ENABLE ROW LEVEL SECURITY",
]


def tier_rows() -> list[dict[str, object]]:
    return [
        {
            "id": tier_id(tier_type),
            "name": name,
            "tier_type": tier_type,
            "annual": annual,
            "monthly": monthly,
            "interval": interval,
        }
        for name, tier_type, annual, monthly, interval in TIERS
    ]


INSERT_TIER = (
    "INSERT INTO public.membership_tiers (id, name, tier_type, annual_token_grant, monthly_token_grant,"
    " viva_tokens_monthly, billing_interval) VALUES (CAST(:id AS uuid), :name,"
    " CAST(:tier_type AS public.membership_tier_type), :annual, :monthly, :monthly, :interval)"
)
