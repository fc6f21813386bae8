variable "name" {
  type        = string
  description = "Name prefix of every resource and the MSK cluster name, e.g. tidelake-dev."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "vpc_id" {
  type        = string
  description = "VPC the cluster's network interfaces are placed in."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets (two or more zones) for the cluster's network interfaces."

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "MSK Serverless needs subnets in at least two availability zones."
  }
}

variable "topic_prefix" {
  type        = string
  description = "Environment prefix of the Kafka topics (TIDELAKE_TOPIC_PREFIX, e.g. \"dev.\"); IAM grants cover topics starting with it."
  default     = ""
}

variable "consumer_group_prefix" {
  type        = string
  description = "Prefix of the consumer groups the consumer policy may use (TIDELAKE_CONSUMER_GROUP starts with it)."
  default     = "tidelake"
}
