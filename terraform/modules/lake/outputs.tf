output "bucket_id" {
  description = "Name of the lake bucket."
  value       = aws_s3_bucket.lake.id
}

output "bucket_arn" {
  description = "ARN of the lake bucket."
  value       = aws_s3_bucket.lake.arn
}

output "lake_uri" {
  description = "Value for LAKE_URI: s3://<bucket>/<lake_prefix>."
  value       = "s3://${aws_s3_bucket.lake.id}/${var.lake_prefix}"
}

output "compute_log_prefix" {
  description = "Key prefix for Dagster's S3 compute log manager."
  value       = var.compute_log_prefix
}

output "kms_key_arn" {
  description = "ARN of the lake's KMS key."
  value       = aws_kms_key.lake.arn
}

output "read_write_policy_arn" {
  description = "IAM policy: read-write on the whole lake prefix (ingestion, Dagster runs)."
  value       = aws_iam_policy.lake_read_write.arn
}

output "read_only_policy_arn" {
  description = "IAM policy: read-only on the analyst prefixes (attach to analyst roles or groups)."
  value       = aws_iam_policy.lake_read_only.arn
}

output "compute_logs_policy_arn" {
  description = "IAM policy: read-write on the Dagster compute-log prefix."
  value       = aws_iam_policy.compute_logs.arn
}
