output "vpc_id" {
  description = "ID of the VPC (created or existing)."
  value       = var.create_vpc ? aws_vpc.this[0].id : var.existing_vpc_id
}

output "vpc_cidr" {
  description = "CIDR block of the created VPC (null for an existing VPC)."
  value       = var.create_vpc ? aws_vpc.this[0].cidr_block : null
}

output "public_subnet_ids" {
  description = "Public subnets, for internet-facing load balancers."
  value       = var.create_vpc ? aws_subnet.public[*].id : var.existing_public_subnet_ids
}

output "private_subnet_ids" {
  description = "Private subnets with NAT egress, for ECS tasks and MSK."
  value       = var.create_vpc ? aws_subnet.private[*].id : var.existing_private_subnet_ids
}

output "database_subnet_ids" {
  description = "Isolated subnets for RDS."
  value       = var.create_vpc ? aws_subnet.database[*].id : var.existing_database_subnet_ids
}
