variable "region" {
  type        = string
  description = "AWS region of the environment."
}

variable "availability_zones" {
  type        = list(string)
  description = "Two or more availability zones of the region."
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
  default     = "10.40.0.0/16"
}

variable "topic_partitions" {
  type        = number
  description = "Partitions per contract topic."
  default     = 3
}

variable "datagen_enabled" {
  type        = bool
  description = "Run Confluent's Datagen connector (sample PAGEVIEWS records on its own topic)."
  default     = true
}
