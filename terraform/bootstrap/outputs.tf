output "state_bucket" {
  description = "Bucket for the environments' state: put it in envs/<env>/backend.hcl."
  value       = aws_s3_bucket.state.id
}

output "state_kms_key_arn" {
  description = "KMS key of the state bucket (kms_key_id in backend.hcl)."
  value       = aws_kms_key.state.arn
}

output "ecr_repository_url" {
  description = "Where to push the Tidelake image; image = <this>:<tag> in the environments."
  value       = aws_ecr_repository.tidelake.repository_url
}
