{{ config(
    primary_key=['created_day', 'currency'],
    write_disposition='replace',
    tags=['finance', 'daily'],
    description='Succeeded charges per UTC day and currency; rebuilt whole on every run.',
) }}
select
    date_trunc('day', created) as created_day,
    currency,
    count(*) as charge_count,
    sum(amount) as gross_amount,
    sum(amount_refunded) as refunded_amount,
    sum(amount - amount_refunded) as net_amount
from charges
where status = 'succeeded'
  and created >= timestamp {{ var('revenue_since', '2024-01-01') | literal }}
group by date_trunc('day', created), currency
