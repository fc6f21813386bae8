# Remote state in the bucket made by terraform/bootstrap, locked with S3 conditional writes
# (no DynamoDB table). The bucket, region and KMS key come from backend.hcl:
#   cp backend.hcl.example backend.hcl   # fill in the bootstrap outputs
#   terraform init -backend-config=backend.hcl
terraform {
  backend "s3" {
    key          = "tidelake/dev/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
