variable "name" {
  type        = string
  description = "Name prefix of every resource, e.g. tidelake-dev."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource (on top of the provider's default_tags)."
  default     = {}
}

variable "create_vpc" {
  type        = bool
  description = "Create a new VPC. When false, pass existing_vpc_id and the existing_*_subnet_ids instead."
  default     = true
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR block of the new VPC (ignored when create_vpc = false)."
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be a valid IPv4 CIDR block."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones to spread subnets over: two to four (the ALB and RDS need two; the subnet plan has room for four)."

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4
    error_message = "Give two to four availability zones."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all zones (cheaper, a zone outage cuts egress) instead of one per zone."
  default     = true
}

variable "flow_log_retention_days" {
  type        = number
  description = "Retention of the VPC flow log group in CloudWatch, in days."
  default     = 365
}

variable "existing_vpc_id" {
  type        = string
  description = "ID of an existing VPC to use when create_vpc = false."
  default     = null
}

variable "existing_public_subnet_ids" {
  type        = list(string)
  description = "Existing public subnets (load balancers) when create_vpc = false."
  default     = []
}

variable "existing_private_subnet_ids" {
  type        = list(string)
  description = "Existing private subnets with a route to a NAT (ECS tasks, MSK) when create_vpc = false."
  default     = []
}

variable "existing_database_subnet_ids" {
  type        = list(string)
  description = "Existing private subnets for RDS when create_vpc = false (may equal the private subnets)."
  default     = []
}
