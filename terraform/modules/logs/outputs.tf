output "bucket_id" {
  description = "Name of the access-log bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the access-log bucket."
  value       = aws_s3_bucket.this.arn
}

output "s3_log_prefix" {
  description = "Key prefix under which S3 server access logs are written."
  value       = "s3/"
}

output "alb_log_prefix" {
  description = "Key prefix under which load balancers write their access logs."
  value       = "alb"
}
