classdef BadOut < scistack.BaseVariable
end
