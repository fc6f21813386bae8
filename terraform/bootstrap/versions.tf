terraform {
  required_version = ">= 1.10"

  # Local state on purpose: this root creates the bucket every other root keeps its state in.
  # Keep terraform.tfstate of this root safe (or migrate it into the bucket after the first apply).

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}
