{{ config(
    primary_key='id',
    cursor='created',
    lag='3h',
    initial_value='2023-01-01',
    backfill_chunk='90d',
    tags=['payments'],
    description='Charges with their outcome; the first load runs in 90-day chunks.',
) }}
select
    id,
    created,
    customer_id,
    payment_intent,
    invoice_id,
    amount,
    amount_refunded,
    currency,
    status,
    paid,
    captured,
    refunded,
    failure_code,
    outcome_type,
    outcome_risk_level,
    card_brand,
    card_country,
    balance_transaction_id
from charges
{% if is_incremental() %}
where created >= {{ cursor_start }}
  and created < {{ cursor_end }}
{% endif %}
