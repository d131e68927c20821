"""The Sigma tables the emulator serves: column names, Sigma types and primary keys.

Copied from Sigma's published schema (coreapi and itemized_fees datasets) so the emulator
answers `select *` with the same columns and types as Stripe. Written compactly: each table is
a block of `name:type` words, and `*` after a name marks the primary key.
"""

from __future__ import annotations

from dataclasses import dataclass

SIGMA_TYPES = ("varchar", "bigint", "timestamp", "boolean", "double", "decimal(38,18)")


@dataclass(frozen=True)
class Column:
    name: str
    sigma_type: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def type_of(self, column_name: str) -> str:
        for column in self.columns:
            if column.name == column_name:
                return column.sigma_type
        raise KeyError(f"table {self.name} has no column {column_name!r}")


_SPECS = {
    "balance_transactions": """
id*:varchar available_on:timestamp description:varchar automatic_transfer_id:varchar
batch_timestamp:timestamp net:bigint amount:bigint status:varchar source_id:varchar
currency:varchar reporting_category:varchar type:varchar exchange_rate:double created:timestamp
fee:bigint
""",
    "charges": """
id*:varchar card_address_country:varchar outcome_network_decline_code:varchar order_id:varchar
card_network:varchar customer_id:varchar shipping_address_line2:varchar captured_at:timestamp
captured:boolean card_exp_month:bigint description:varchar outcome_rule_id:varchar
refunded:boolean failure_code:varchar shipping_address_state:varchar
card_address_line1_check:varchar payment_method_id:varchar card_address_line2:varchar
outcome_risk_score:bigint shipping_address_postal_code:varchar card_fingerprint:varchar
card_brand:varchar dispute_id:varchar batch_timestamp:timestamp outcome_type:varchar
application_fee_id:varchar shipping_address_line1:varchar card_address_state:varchar
card_address_city:varchar failure_message:varchar balance_transaction_id:varchar
receipt_email:varchar amount:bigint outcome_risk_level:varchar
outcome_network_advice_code:varchar card_address_zip_check:varchar card_token_type:varchar
card_address_zip:varchar transfer_id:varchar receipt_number:varchar
statement_descriptor:varchar outcome_network_status:varchar card_tokenization_method:varchar
amount_refunded:bigint payment_method_type:varchar card_name:varchar paid:boolean
destination_id:varchar outcome_reason:varchar status:varchar on_behalf_of_id:varchar
card_id:varchar card_customer_id:varchar shipping_address_city:varchar
source_transfer_id:varchar card_last4:varchar outcome_seller_message:varchar source_id:varchar
card_cvc_check:varchar currency:varchar card_address_line1:varchar transfer_group:varchar
card_currency:varchar card_default_for_currency:boolean card_recipient_id:varchar
calculated_statement_descriptor:varchar card_country:varchar payment_intent:varchar
invoice_id:varchar card_dynamic_last4:varchar application_id:varchar
outcome_advice_code:varchar statement_descriptor_suffix:varchar card_funding:varchar
card_exp_year:bigint created:timestamp shipping_address_country:varchar
""",
    "customers": """
id*:varchar address_city:varchar discount_coupon_id:varchar
invoice_settings_default_payment_method_id:varchar business_vat_id:varchar tax_exempt:varchar
name:varchar discount_subscription:varchar discount_start:timestamp discount_invoice:varchar
sources_data_id:varchar shipping_address_line2:varchar email:varchar default_source_id:varchar
tax_ip_address:varchar preferred_locales:varchar description:varchar
customer_account_id:varchar shipping_address_state:varchar discount_schedule_id:varchar
address_postal_code:varchar shipping_address_postal_code:varchar batch_timestamp:timestamp
shipping_address_line1:varchar balance:bigint discount_invoice_item:varchar
tax_info_tax_id:varchar discount_subscription_item:varchar address_state:varchar
invoice_credit_balance:varchar address_country:varchar shipping_name:varchar
shipping_address_city:varchar shipping_phone:varchar tax_info_type:varchar currency:varchar
discount_end:timestamp address_line2:varchar discount_promotion_code_id:varchar
discount_customer_id:varchar account_balance:bigint delinquent:boolean address_line1:varchar
deleted:boolean phone:varchar created:timestamp shipping_address_country:varchar
discount_checkout_session:varchar
""",
    "disputes": """
id*:varchar evidence_details_has_evidence:boolean evidence_cancellation_rebuttal:varchar
evidence_details_past_due:boolean evidence_refund_policy_id:varchar
evidence_shipping_carrier:varchar network_details_visa_rapid_dispute_resolution:boolean
evidence_uncategorized_text:varchar evidence_product_description:varchar
evidence_shipping_address:varchar evidence_shipping_date:varchar
evidence_customer_communication_id:varchar evidence_billing_address:varchar
batch_timestamp:timestamp evidence_customer_email_address:varchar
evidence_refund_policy_disclosure:varchar evidence_duplicate_charge_id:varchar reason:varchar
amount:bigint evidence_duplicate_charge_documentation_id:varchar
evidence_customer_signature_id:varchar evidence_shipping_tracking_number:varchar
evidence_uncategorized_file_id:varchar evidence_customer_name:varchar
evidence_refund_refusal_explanation:varchar is_charge_refundable:boolean
evidence_details_submission_count:bigint evidence_customer_purchase_ip:varchar status:varchar
evidence_service_date:varchar evidence_service_documentation_id:varchar currency:varchar
evidence_cancellation_policy_disclosure:varchar network_reason_code:varchar
network_details_type:varchar evidence_access_activity_log:varchar
evidence_shipping_documentation_id:varchar evidence_cancellation_policy_id:varchar
evidence_details_due_by:timestamp evidence_receipt_id:varchar created:timestamp
charge_id:varchar
""",
    "invoices": """
id*:varchar amount_due:bigint ending_balance:bigint number:varchar discount_coupon_id:varchar
shipping_details_address_line2:varchar shipping_details_address_city:varchar
discount_subscription:varchar customer_address_postal_code:varchar transfer_data_amount:bigint
customer_email:varchar pre_payment_credit_notes_amount:bigint application_fee:bigint
discount_start:timestamp discount_invoice:varchar tax_percent:double collection_method:varchar
customer_phone:varchar customer_address_city:varchar customer_id:varchar customer_name:varchar
starting_balance:bigint status_transitions_voided_at:timestamp tax:bigint description:varchar
amount_shipping:bigint quote_id:varchar customer_shipping_address_line2:varchar
customer_shipping_address_state:varchar shipping_details_address_state:varchar
automatic_tax_enabled:boolean status_transitions_marked_uncollectible_at:timestamp
shipping_cost_amount_subtotal:bigint subscription_proration_date:timestamp
default_payment_method_id:varchar batch_timestamp:timestamp customer_tax_exempt:varchar
next_payment_attempt:timestamp customer_shipping_address_city:varchar
transfer_data_destination_id:varchar total:bigint shipping_cost_amount_tax:bigint
amount_remaining:bigint period_start:timestamp discount_invoice_item:varchar
discount_subscription_item:varchar customer_shipping_address_postal_code:varchar
customer_shipping_address_country:varchar period_end:timestamp attempt_count:bigint
customer_address_state:varchar webhooks_delivered_at:timestamp receipt_number:varchar
statement_descriptor:varchar customer_shipping_address_line1:varchar date:timestamp
discounts:varchar customer_address_line2:varchar customer_shipping_phone:varchar paid:boolean
customer_shipping_name:varchar status:varchar on_behalf_of_id:varchar
shipping_details_name:varchar shipping_cost_amount_total:bigint
status_transitions_paid_at:timestamp due_date:timestamp amount_paid:bigint currency:varchar
subtotal:bigint shipping_details_phone:varchar attempted:boolean subscription_id:varchar
discount_end:timestamp shipping_details_address_country:varchar auto_advance:boolean
customer_address_country:varchar shipping_details_address_line1:varchar
customer_address_line1:varchar automatic_tax_status:varchar paid_out_of_band:boolean
discount_promotion_code_id:varchar post_payment_credit_notes_amount:bigint
effective_at:timestamp discount_customer_id:varchar
shipping_details_address_postal_code:varchar billing_reason:varchar footer:varchar
customer_description:varchar application_id:varchar shipping_cost_shipping_rate_id:varchar
status_transitions_finalized_at:timestamp discount_checkout_session:varchar charge_id:varchar
""",
    "itemized_fees": """
balance_transaction_created:timestamp balance_transaction_id:varchar
balance_transaction_description:varchar incurred_by:varchar incurred_by_type:varchar
amount:decimal(38,18) tax:decimal(38,18) currency:varchar incurred_at:timestamp
activity_start_time:timestamp activity_end_time:timestamp product_feature_description:varchar
platform_id:varchar connected_account_id:varchar fee_transaction_created:timestamp
fee_transaction_id:varchar fee_category:varchar pricing_tier:bigint
""",
    "payment_intents": """
id*:varchar review_id:varchar customer_id:varchar payment_method_types:varchar
amount_capturable:bigint description:varchar last_payment_error_charge:varchar
amount_details_tip_amount:bigint payment_method_id:varchar
amount_details_shipping_from_postal_code:varchar batch_timestamp:timestamp
payment_details_order_reference:varchar card_request_three_d_secure:varchar
receipt_email:varchar payment_details_customer_reference:varchar amount:bigint
last_payment_error_source:varchar capture_method:varchar application_fee_amount:bigint
amount_details_shipping_amount:bigint amount_details_discount_amount:bigint
cancellation_reason:varchar statement_descriptor:varchar confirmation_method:varchar
status:varchar on_behalf_of_id:varchar amount_details_surcharge_amount:bigint
last_payment_error_type:varchar amount_details_shipping_to_postal_code:varchar currency:varchar
canceled_at:timestamp invoice_id:varchar application_id:varchar
statement_descriptor_suffix:varchar amount_details_tax_total_tax_amount:bigint
created:timestamp setup_future_usage:varchar
""",
    "refunds": """
id*:varchar failure_reason:varchar refund_description:varchar batch_timestamp:timestamp
source_transfer_reversal_id:varchar balance_transaction_id:varchar reason:varchar amount:bigint
failure_balance_transaction_id:varchar receipt_number:varchar status:varchar
refund_transfer_reversal_id:varchar currency:varchar refund_payment_intent:varchar
created:timestamp charge_id:varchar
""",
    "subscriptions": """
id*:varchar pending_update_trial_end:timestamp pending_update_expires_at:timestamp
trial_start:timestamp discount_coupon_id:varchar
payment_settings_payment_method_options_customer_balance_bank_transfer_eu_bank_transfer_country:varchar
payment_settings_payment_method_options_customer_balance_bank_transfer_type:varchar
discount_subscription:varchar quantity:bigint discount_start:timestamp
application_fee_percent:double start_date:timestamp discount_invoice:varchar tax_percent:double
payment_settings_payment_method_options_customer_balance_funding_type:varchar
customer_id:varchar billing_thresholds_amount_gte:bigint default_source_id:varchar
cancellation_reason_text:varchar
payment_settings_payment_method_options_customer_balance_bank_transfer_id_bank_transfer_bank:varchar
description:varchar cancel_at_period_end:boolean price_id:varchar
payment_settings_save_default_payment_method:varchar
payment_settings_payment_method_options_card_network:varchar discount_schedule_id:varchar
pending_update_billing_cycle_anchor:timestamp automatic_tax_enabled:boolean
default_payment_method_id:varchar batch_timestamp:timestamp current_period_start:timestamp
transfer_data_destination_id:varchar cancellation_details_comment:varchar
trial_settings_end_behavior_missing_payment_method:varchar pending_setup_intent_id:varchar
pause_collection_resumes_at:timestamp ended_at:timestamp pending_update_trial_from_plan:boolean
cancel_at:timestamp discount_invoice_item:varchar billing_mode_type:varchar
pause_collection_behavior:varchar discount_subscription_item:varchar
payment_settings_payment_method_options_card_mandate_options_amount:bigint
proration_discounts:varchar plan_id:varchar pending_invoice_item_interval_count:bigint
cancellation_reason:varchar schedule_id:varchar
payment_settings_payment_method_options_bancontact_preferred_language:varchar discounts:varchar
payment_settings_payment_method_options_card_mandate_options_description:varchar status:varchar
on_behalf_of_id:varchar trial_end:timestamp transfer_data_amount_percent:double
payment_settings_payment_method_options_card_mandate_options_amount_type:varchar
pending_invoice_item_interval:varchar next_pending_invoice_item_invoice:timestamp
billing_mode_updated_at:timestamp latest_invoice_id:varchar discount_end:timestamp
payment_settings_payment_method_options_us_bank_account_verification_method:varchar
billing:varchar start:timestamp
payment_settings_payment_method_options_card_request_three_d_secure:varchar
current_period_end:timestamp
payment_settings_payment_method_options_acss_debit_verification_method:varchar
discount_promotion_code_id:varchar billing_thresholds_reset_billing_cycle_anchor:boolean
discount_customer_id:varchar
payment_settings_payment_method_options_acss_debit_mandate_options_transaction_type:varchar
canceled_at:timestamp cancellation_details_reason:varchar cancellation_details_feedback:varchar
application_id:varchar billing_cycle_anchor:timestamp days_until_due:bigint created:timestamp
discount_checkout_session:varchar
""",
}


def _parse(name: str, spec: str) -> Table:
    columns: list[Column] = []
    primary_key: list[str] = []
    for word in spec.split():
        column_name, sigma_type = word.split(":")
        if column_name.endswith("*"):
            column_name = column_name[:-1]
            primary_key.append(column_name)
        if sigma_type not in SIGMA_TYPES:
            raise ValueError(f"table {name}: column {column_name} has unknown type {sigma_type}")
        columns.append(Column(column_name, sigma_type))
    return Table(name, tuple(columns), tuple(primary_key))


TABLES: dict[str, Table] = {name: _parse(name, spec) for name, spec in _SPECS.items()}
