variable "region" {
  type        = string
  description = "AWS region of the environment."
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones of the region (three for production)."
}

variable "image" {
  type        = string
  description = "Tidelake image in ECR, <bootstrap ecr_repository_url>:<tag>."
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate (same region) for the HTTPS listeners of the Dagster UI and the API."
}

variable "dagster_allowed_cidrs" {
  type        = list(string)
  description = "CIDR blocks (offices, VPN) that may open the Dagster UI."
}

variable "api_allowed_cidrs" {
  type        = list(string)
  description = "CIDR blocks that may call the API."
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR block of the environment's VPC."
  default     = "10.50.0.0/16"
}

variable "lake_bucket_name" {
  type        = string
  description = "Exact name of the production lake bucket (null: AWS picks tidelake-prod-lake-...)."
  default     = null
}

variable "api_web_acl_arn" {
  type        = string
  description = "WAFv2 web ACL for the API's load balancer (recommended when api_allowed_cidrs is public)."
  default     = null
}

variable "alert_webhook_secret_arn" {
  type        = string
  description = "Secrets Manager secret holding TIDELAKE_ALERT_WEBHOOK_URL (failure alerts); null to disable."
  default     = null
}
